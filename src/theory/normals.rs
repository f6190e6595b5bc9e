//! Standard normals in bulk, with the bits of `rand_distr`'s `StandardNormal` drawn one at a
//! time from a [`ChaCha8Rng`] (the generator of every stream of [`crate::seed`]).
//!
//! [`fill`] gives exactly what `rng.sample::<f32, _>(StandardNormal)` called once per value
//! would give, and leaves the generator where those calls would leave it, so the sample
//! streams (and every result drawn from them) do not change; it is only faster. With AVX-512 it
//! computes the ChaCha8 keystream sixteen blocks at a time (with AVX2 eight), evaluates the
//! ziggurat's fast path (about 99% of the draws) eight values at a time (with AVX2 in two
//! halves of four), and walks the draws in order, handing the rest to `rand_distr` itself on a
//! generator that replays the same keystream. Elsewhere it is the one-at-a-time loop.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The abscissae of `rand_distr` 0.4's normal ziggurat (its private table `ZIG_NORM_X`,
/// copied; `rand_distr` is MIT or Apache-2.0 licensed), indexed by the low 8 bits of a draw.
#[rustfmt::skip]
#[allow(clippy::excessive_precision)]
static ZIG_NORM_X: [f64; 257] =
    [3.910757959537090045, 3.654152885361008796, 3.449278298560964462, 3.320244733839166074,
     3.224575052047029100, 3.147889289517149969, 3.083526132001233044, 3.027837791768635434,
     2.978603279880844834, 2.934366867207854224, 2.894121053612348060, 2.857138730872132548,
     2.822877396825325125, 2.790921174000785765, 2.760944005278822555, 2.732685359042827056,
     2.705933656121858100, 2.680514643284522158, 2.656283037575502437, 2.633116393630324570,
     2.610910518487548515, 2.589575986706995181, 2.569035452680536569, 2.549221550323460761,
     2.530075232158516929, 2.511544441625342294, 2.493583041269680667, 2.476149939669143318,
     2.459208374333311298, 2.442725318198956774, 2.426670984935725972, 2.411018413899685520,
     2.395743119780480601, 2.380822795170626005, 2.366237056715818632, 2.351967227377659952,
     2.337996148795031370, 2.324308018869623016, 2.310888250599850036, 2.297723348901329565,
     2.284800802722946056, 2.272108990226823888, 2.259637095172217780, 2.247375032945807760,
     2.235313384928327984, 2.223443340090905718, 2.211756642882544366, 2.200245546609647995,
     2.188902771624720689, 2.177721467738641614, 2.166695180352645966, 2.155817819875063268,
     2.145083634046203613, 2.134487182844320152, 2.124023315687815661, 2.113687150684933957,
     2.103474055713146829, 2.093379631137050279, 2.083399693996551783, 2.073530263516978778,
     2.063767547809956415, 2.054107931648864849, 2.044547965215732788, 2.035084353727808715,
     2.025713947862032960, 2.016433734904371722, 2.007240830558684852, 1.998132471356564244,
     1.989106007615571325, 1.980158896898598364, 1.971288697931769640, 1.962493064942461896,
     1.953769742382734043, 1.945116560006753925, 1.936531428273758904, 1.928012334050718257,
     1.919557336591228847, 1.911164563769282232, 1.902832208548446369, 1.894558525668710081,
     1.886341828534776388, 1.878180486290977669, 1.870072921069236838, 1.862017605397632281,
     1.854013059758148119, 1.846057850283119750, 1.838150586580728607, 1.830289919680666566,
     1.822474540091783224, 1.814703175964167636, 1.806974591348693426, 1.799287584547580199,
     1.791640986550010028, 1.784033659547276329, 1.776464495522344977, 1.768932414909077933,
     1.761436365316706665, 1.753975320315455111, 1.746548278279492994, 1.739154261283669012,
     1.731792314050707216, 1.724461502945775715, 1.717160915015540690, 1.709889657069006086,
     1.702646854797613907, 1.695431651932238548, 1.688243209434858727, 1.681080704722823338,
     1.673943330923760353, 1.666830296159286684, 1.659740822855789499, 1.652674147080648526,
     1.645629517902360339, 1.638606196773111146, 1.631603456932422036, 1.624620582830568427,
     1.617656869570534228, 1.610711622367333673, 1.603784156023583041, 1.596873794420261339,
     1.589979870021648534, 1.583101723393471438, 1.576238702733332886, 1.569390163412534456,
     1.562555467528439657, 1.555733983466554893, 1.548925085471535512, 1.542128153226347553,
     1.535342571438843118, 1.528567729435024614, 1.521803020758293101, 1.515047842773992404,
     1.508301596278571965, 1.501563685112706548, 1.494833515777718391, 1.488110497054654369,
     1.481394039625375747, 1.474683555695025516, 1.467978458615230908, 1.461278162507407830,
     1.454582081885523293, 1.447889631277669675, 1.441200224845798017, 1.434513276002946425,
     1.427828197027290358, 1.421144398672323117, 1.414461289772464658, 1.407778276843371534,
     1.401094763676202559, 1.394410150925071257, 1.387723835686884621, 1.381035211072741964,
     1.374343665770030531, 1.367648583594317957, 1.360949343030101844, 1.354245316759430606,
     1.347535871177359290, 1.340820365893152122, 1.334098153216083604, 1.327368577624624679,
     1.320630975217730096, 1.313884673146868964, 1.307128989027353860, 1.300363230327433728,
     1.293586693733517645, 1.286798664489786415, 1.279998415710333237, 1.273185207661843732,
     1.266358287014688333, 1.259516886060144225, 1.252660221891297887, 1.245787495544997903,
     1.238897891102027415, 1.231990574742445110, 1.225064693752808020, 1.218119375481726552,
     1.211153726239911244, 1.204166830140560140, 1.197157747875585931, 1.190125515422801650,
     1.183069142678760732, 1.175987612011489825, 1.168879876726833800, 1.161744859441574240,
     1.154581450355851802, 1.147388505416733873, 1.140164844363995789, 1.132909248648336975,
     1.125620459211294389, 1.118297174115062909, 1.110938046009249502, 1.103541679420268151,
     1.096106627847603487, 1.088631390649514197, 1.081114409698889389, 1.073554065787871714,
     1.065948674757506653, 1.058296483326006454, 1.050595664586207123, 1.042844313139370538,
     1.035040439828605274, 1.027181966030751292, 1.019266717460529215, 1.011292417434978441,
     1.003256679539591412, 0.995156999629943084, 0.986990747093846266, 0.978755155288937750,
     0.970447311058864615, 0.962064143217605250, 0.953602409875572654, 0.945058684462571130,
     0.936429340280896860, 0.927710533396234771, 0.918898183643734989, 0.909987953490768997,
     0.900975224455174528, 0.891855070726792376, 0.882622229578910122, 0.873271068082494550,
     0.863795545546826915, 0.854189171001560554, 0.844444954902423661, 0.834555354079518752,
     0.824512208745288633, 0.814306670128064347, 0.803929116982664893, 0.793369058833152785,
     0.782615023299588763, 0.771654424216739354, 0.760473406422083165, 0.749056662009581653,
     0.737387211425838629, 0.725446140901303549, 0.713212285182022732, 0.700661841097584448,
     0.687767892786257717, 0.674499822827436479, 0.660822574234205984, 0.646695714884388928,
     0.632072236375024632, 0.616896989996235545, 0.601104617743940417, 0.584616766093722262,
     0.567338257040473026, 0.549151702313026790, 0.529909720646495108, 0.509423329585933393,
     0.487443966121754335, 0.463634336771763245, 0.437518402186662658, 0.408389134588000746,
     0.375121332850465727, 0.335737519180459465, 0.286174591747260509, 0.215241895913273806,
     0.000000000000000000];

/// "expand 32-byte k".
const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// ChaCha8: four double rounds.
const DOUBLE_ROUNDS: usize = 4;
/// Keystream blocks computed per chunk of draws (four calls of the 16-block kernel).
const CHUNK_BLOCKS: usize = 64;
/// Draws (two words each) evaluated per chunk: 8-draw groups whose words fit in the chunk
/// wherever in its first block they start.
const CHUNK_DRAWS: usize = (CHUNK_BLOCKS * 16 - 15) / 2 / 8 * 8;

/// The key of a generator as little-endian words.
fn key_words(rng: &ChaCha8Rng) -> [u32; 8] {
    let seed = rng.get_seed();
    std::array::from_fn(|i| {
        u32::from_le_bytes([
            seed[4 * i],
            seed[4 * i + 1],
            seed[4 * i + 2],
            seed[4 * i + 3],
        ])
    })
}

#[inline(always)]
fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// Block `block` of the ChaCha8 keystream of `key` and `stream`: words `16 block ..` of the
/// generator's output (the layout of `rand_chacha`: 64-bit block counter in words 12-13, the
/// stream in words 14-15).
fn block(key: &[u32; 8], stream: u64, block: u64) -> [u32; 16] {
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&CONSTANTS);
    init[4..12].copy_from_slice(key);
    init[12] = block as u32;
    init[13] = (block >> 32) as u32;
    init[14] = stream as u32;
    init[15] = (stream >> 32) as u32;
    let mut x = init;
    for _ in 0..DOUBLE_ROUNDS {
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 1, 5, 9, 13);
        quarter(&mut x, 2, 6, 10, 14);
        quarter(&mut x, 3, 7, 11, 15);
        quarter(&mut x, 0, 5, 10, 15);
        quarter(&mut x, 1, 6, 11, 12);
        quarter(&mut x, 2, 7, 8, 13);
        quarter(&mut x, 3, 4, 9, 14);
    }
    for (v, i) in x.iter_mut().zip(init) {
        *v = v.wrapping_add(i);
    }
    x
}

/// Blocks `first .. first + 16` of the keystream into `out`, one after the other: the 16
/// blocks run in the lanes of 16 vectors, then a 16 x 16 transpose puts each block's words
/// together.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks16(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32; 256]) {
    // SAFETY (whole body): the caller guarantees AVX-512F; loads read the local arrays and
    // stores write inside `out` (16 rows of 16 words).
    unsafe {
        let mut init = [_mm512_setzero_si512(); 16];
        for (v, c) in init.iter_mut().zip(CONSTANTS) {
            *v = _mm512_set1_epi32(c as i32);
        }
        for (v, k) in init[4..12].iter_mut().zip(key) {
            *v = _mm512_set1_epi32(*k as i32);
        }
        let lo: [u32; 16] = std::array::from_fn(|l| first.wrapping_add(l as u64) as u32);
        let hi: [u32; 16] = std::array::from_fn(|l| (first.wrapping_add(l as u64) >> 32) as u32);
        init[12] = _mm512_loadu_si512(lo.as_ptr().cast());
        init[13] = _mm512_loadu_si512(hi.as_ptr().cast());
        init[14] = _mm512_set1_epi32(stream as u32 as i32);
        init[15] = _mm512_set1_epi32((stream >> 32) as u32 as i32);
        let mut x = init;
        macro_rules! quarter {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                x[$d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[$d], x[$a]));
                x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                x[$b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[$b], x[$c]));
                x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                x[$d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[$d], x[$a]));
                x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                x[$b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[$b], x[$c]));
            };
        }
        for _ in 0..DOUBLE_ROUNDS {
            quarter!(0, 4, 8, 12);
            quarter!(1, 5, 9, 13);
            quarter!(2, 6, 10, 14);
            quarter!(3, 7, 11, 15);
            quarter!(0, 5, 10, 15);
            quarter!(1, 6, 11, 12);
            quarter!(2, 7, 8, 13);
            quarter!(3, 4, 9, 14);
        }
        for (v, i) in x.iter_mut().zip(init) {
            *v = _mm512_add_epi32(*v, i);
        }
        // x[j] lane l is word j of block l; out[16 l + j] wants it
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(x[2 * i], x[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(x[2 * i], x[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for g in (0..16).step_by(4) {
            u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
            u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
            u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
            u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
        }
        // 128-bit part k of u[4 g + c] is words 4 g .. 4 g + 4 of block 4 k + c
        let o = out.as_mut_ptr();
        for c in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x88>(u[c], u[4 + c]);
            let v1 = _mm512_shuffle_i32x4::<0xDD>(u[c], u[4 + c]);
            let w0 = _mm512_shuffle_i32x4::<0x88>(u[8 + c], u[12 + c]);
            let w1 = _mm512_shuffle_i32x4::<0xDD>(u[8 + c], u[12 + c]);
            _mm512_storeu_si512(o.add(c * 16).cast(), _mm512_shuffle_i32x4::<0x88>(v0, w0));
            _mm512_storeu_si512(
                o.add((8 + c) * 16).cast(),
                _mm512_shuffle_i32x4::<0xDD>(v0, w0),
            );
            _mm512_storeu_si512(
                o.add((4 + c) * 16).cast(),
                _mm512_shuffle_i32x4::<0x88>(v1, w1),
            );
            _mm512_storeu_si512(
                o.add((12 + c) * 16).cast(),
                _mm512_shuffle_i32x4::<0xDD>(v1, w1),
            );
        }
    }
}

/// Blocks `first .. first + 8` of the keystream into `out`, one after the other: the 8 blocks
/// run in the lanes of 16 vectors of 8 words, then two 8 x 8 transposes put each block's words
/// together.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blocks8(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32; 128]) {
    // SAFETY (whole body): the caller guarantees AVX2; loads read the local arrays and stores
    // write inside `out` (8 rows of 16 words).
    unsafe {
        let mut init = [_mm256_setzero_si256(); 16];
        for (v, c) in init.iter_mut().zip(CONSTANTS) {
            *v = _mm256_set1_epi32(c as i32);
        }
        for (v, k) in init[4..12].iter_mut().zip(key) {
            *v = _mm256_set1_epi32(*k as i32);
        }
        let lo: [u32; 8] = std::array::from_fn(|l| first.wrapping_add(l as u64) as u32);
        let hi: [u32; 8] = std::array::from_fn(|l| (first.wrapping_add(l as u64) >> 32) as u32);
        init[12] = _mm256_loadu_si256(lo.as_ptr().cast());
        init[13] = _mm256_loadu_si256(hi.as_ptr().cast());
        init[14] = _mm256_set1_epi32(stream as u32 as i32);
        init[15] = _mm256_set1_epi32((stream >> 32) as u32 as i32);
        let mut x = init;
        // rotations by whole bytes are byte shuffles within each 32-bit word
        let rot16 = _mm256_setr_epi8(
            2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11,
            8, 9, 14, 15, 12, 13,
        );
        let rot8 = _mm256_setr_epi8(
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9,
            10, 15, 12, 13, 14,
        );
        macro_rules! rol {
            ($v:expr, $n:literal) => {
                _mm256_or_si256(
                    _mm256_slli_epi32::<$n>($v),
                    _mm256_srli_epi32::<{ 32 - $n }>($v),
                )
            };
        }
        macro_rules! quarter {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot16);
                x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                x[$b] = rol!(_mm256_xor_si256(x[$b], x[$c]), 12);
                x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot8);
                x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                x[$b] = rol!(_mm256_xor_si256(x[$b], x[$c]), 7);
            };
        }
        for _ in 0..DOUBLE_ROUNDS {
            quarter!(0, 4, 8, 12);
            quarter!(1, 5, 9, 13);
            quarter!(2, 6, 10, 14);
            quarter!(3, 7, 11, 15);
            quarter!(0, 5, 10, 15);
            quarter!(1, 6, 11, 12);
            quarter!(2, 7, 8, 13);
            quarter!(3, 4, 9, 14);
        }
        for (v, i) in x.iter_mut().zip(init) {
            *v = _mm256_add_epi32(*v, i);
        }
        // x[j] lane l is word j of block l; out[16 l + j] wants it: words 0-7, then 8-15
        let o = out.as_mut_ptr();
        for half in 0..2 {
            let r = &x[8 * half..8 * half + 8];
            let t = [
                _mm256_unpacklo_epi32(r[0], r[1]),
                _mm256_unpackhi_epi32(r[0], r[1]),
                _mm256_unpacklo_epi32(r[2], r[3]),
                _mm256_unpackhi_epi32(r[2], r[3]),
                _mm256_unpacklo_epi32(r[4], r[5]),
                _mm256_unpackhi_epi32(r[4], r[5]),
                _mm256_unpacklo_epi32(r[6], r[7]),
                _mm256_unpackhi_epi32(r[6], r[7]),
            ];
            let s: [__m256i; 8] = [
                _mm256_unpacklo_epi64(t[0], t[2]),
                _mm256_unpackhi_epi64(t[0], t[2]),
                _mm256_unpacklo_epi64(t[1], t[3]),
                _mm256_unpackhi_epi64(t[1], t[3]),
                _mm256_unpacklo_epi64(t[4], t[6]),
                _mm256_unpackhi_epi64(t[4], t[6]),
                _mm256_unpacklo_epi64(t[5], t[7]),
                _mm256_unpackhi_epi64(t[5], t[7]),
            ];
            // s[c] is words 0-3 of blocks c | c + 4, s[4 + c] words 4-7 of the same blocks
            for c in 0..4 {
                let low = _mm256_permute2x128_si256::<0x20>(s[c], s[4 + c]);
                let high = _mm256_permute2x128_si256::<0x31>(s[c], s[4 + c]);
                _mm256_storeu_si256(o.add(16 * c + 8 * half).cast(), low);
                _mm256_storeu_si256(o.add(16 * (c + 4) + 8 * half).cast(), high);
            }
        }
    }
}

/// A generator that replays the keystream of a [`ChaCha8Rng`] from word `pos` on: words of the
/// current chunk from `chunk`, the others computed. It reads words as the generator does
/// (`next_u64` is two words, the first one low), so `rand_distr` sampling from it consumes and
/// returns what it would from the generator.
struct Replay<'a> {
    key: &'a [u32; 8],
    stream: u64,
    chunk: &'a [u32],
    chunk_start: u64,
    pos: u64,
}

impl Replay<'_> {
    fn word(&mut self) -> u32 {
        let p = self.pos;
        self.pos += 1;
        match p.checked_sub(self.chunk_start) {
            Some(i) if i < self.chunk.len() as u64 => self.chunk[i as usize],
            _ => block(self.key, self.stream, p / 16)[(p % 16) as usize],
        }
    }
}

impl RngCore for Replay<'_> {
    fn next_u32(&mut self) -> u32 {
        self.word()
    }
    fn next_u64(&mut self) -> u64 {
        let lo = u64::from(self.word());
        let hi = u64::from(self.word());
        (hi << 32) | lo
    }
    /// Whole words, little-endian, the rest of the last one dropped (as `rand_chacha`).
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for part in dest.chunks_mut(4) {
            let w = self.word().to_le_bytes();
            part.copy_from_slice(&w[..part.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The ziggurat's fast path for the 8 draws at `bits`: `u` in [-1, 1) from the high 52 bits,
/// `x = u X[i]` with `i` the low 8 bits, accepted when `|x| < X[i + 1]` (as `rand_distr`
/// computes it). Writes `x` as f32 to `vals` and returns the accepted lanes.
///
/// # Safety
/// AVX-512F must be available; `bits` readable for 8 u64, `vals` writable for 8 f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fast_path8(bits: *const u64, vals: *mut f32) -> u8 {
    // SAFETY (whole body): the caller guarantees AVX-512F and the extents; the gathers read
    // X[i] and X[i + 1] with i < 256, inside the 257 values.
    unsafe {
        let b = _mm512_loadu_si512(bits.cast());
        let i = _mm512_and_si512(b, _mm512_set1_epi64(0xff));
        let one_two = _mm512_set1_epi64(0x4000_0000_0000_0000);
        let f = _mm512_or_si512(_mm512_srli_epi64::<12>(b), one_two);
        let u = _mm512_sub_pd(_mm512_castsi512_pd(f), _mm512_set1_pd(3.0));
        let table = ZIG_NORM_X.as_ptr().cast();
        let xi = _mm512_i64gather_pd::<8>(i, table);
        let next = _mm512_i64gather_pd::<8>(_mm512_add_epi64(i, _mm512_set1_epi64(1)), table);
        let x = _mm512_mul_pd(u, xi);
        let abs = _mm512_and_si512(_mm512_castpd_si512(x), _mm512_set1_epi64(i64::MAX));
        let ok = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(_mm512_castsi512_pd(abs), next);
        _mm256_storeu_ps(vals, _mm512_cvtpd_ps(x));
        ok
    }
}

/// [`fast_path8`] with AVX2: two halves of 4 draws.
///
/// # Safety
/// AVX2 must be available; `bits` readable for 8 u64, `vals` writable for 8 f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fast_path8_avx2(bits: *const u64, vals: *mut f32) -> u8 {
    // SAFETY (whole body): the caller guarantees AVX2 and the extents; the gathers read X[i]
    // and X[i + 1] with i < 256, inside the 257 values.
    unsafe {
        let mut ok = 0u8;
        for half in 0..2 {
            let b = _mm256_loadu_si256(bits.add(4 * half).cast());
            let i = _mm256_and_si256(b, _mm256_set1_epi64x(0xff));
            let one_two = _mm256_set1_epi64x(0x4000_0000_0000_0000);
            let f = _mm256_or_si256(_mm256_srli_epi64::<12>(b), one_two);
            let u = _mm256_sub_pd(_mm256_castsi256_pd(f), _mm256_set1_pd(3.0));
            let table = ZIG_NORM_X.as_ptr();
            let xi = _mm256_i64gather_pd::<8>(table, i);
            let next = _mm256_i64gather_pd::<8>(table, _mm256_add_epi64(i, _mm256_set1_epi64x(1)));
            let x = _mm256_mul_pd(u, xi);
            let abs = _mm256_and_pd(x, _mm256_castsi256_pd(_mm256_set1_epi64x(i64::MAX)));
            let lt = _mm256_cmp_pd::<_CMP_LT_OQ>(abs, next);
            ok |= (_mm256_movemask_pd(lt) as u8) << (4 * half);
            _mm_storeu_ps(vals.add(4 * half), _mm256_cvtpd_ps(x));
        }
        ok
    }
}

/// The vector kernels [`fill`] can use.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kernels {
    /// 16 keystream blocks and 8 draws per call.
    Avx512,
    /// 8 keystream blocks and 2 x 4 draws per call.
    Avx2,
    /// One draw at a time.
    Scalar,
}

impl Kernels {
    /// The widest this processor runs.
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernels::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernels::Avx2;
            }
        }
        Kernels::Scalar
    }
}

/// Fills `out` with what `rng.sample::<f32, _>(StandardNormal)` would give called once per
/// value, in order, and leaves `rng` where those calls would leave it.
pub fn fill(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    fill_with(Kernels::best(), rng, out)
}

/// [`fill`] with the given kernels, which the processor must run.
fn fill_with(kernels: Kernels, rng: &mut ChaCha8Rng, out: &mut [f32]) {
    match kernels {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `best` (or a test that checked) found AVX-512F.
        Kernels::Avx512 => unsafe { fill_avx512(rng, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `best` (or a test that checked) found AVX2.
        Kernels::Avx2 => unsafe { fill_avx2(rng, out) },
        #[cfg(not(target_arch = "x86_64"))]
        Kernels::Avx512 | Kernels::Avx2 => unreachable!("vector kernels on x86-64 only"),
        Kernels::Scalar => {
            for v in out.iter_mut() {
                *v = StandardNormal.sample(rng);
            }
        }
    }
}

/// [`fill`] with AVX-512 ([`fill_chunked`] with its kernels).
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_avx512(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let keystream = |key: &[u32; 8], stream: u64, first: u64, words: &mut [u32]| {
        for (c, part) in words.chunks_exact_mut(256).enumerate() {
            let part: &mut [u32; 256] = part.try_into().expect("256 words");
            // SAFETY: AVX-512F is present (the caller's guarantee).
            unsafe { blocks16(key, stream, first + 16 * c as u64, part) };
        }
    };
    // SAFETY: AVX-512F is present (the caller's guarantee); the arrays hold 8 draws and 8 values.
    let fast8 = |bits: &[u32; 16], vals: &mut [f32; 8]| unsafe {
        fast_path8(bits.as_ptr().cast(), vals.as_mut_ptr())
    };
    fill_chunked(rng, out, keystream, fast8)
}

/// [`fill`] with AVX2 ([`fill_chunked`] with its kernels).
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_avx2(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let keystream = |key: &[u32; 8], stream: u64, first: u64, words: &mut [u32]| {
        for (c, part) in words.chunks_exact_mut(128).enumerate() {
            let part: &mut [u32; 128] = part.try_into().expect("128 words");
            // SAFETY: AVX2 is present (the caller's guarantee).
            unsafe { blocks8(key, stream, first + 8 * c as u64, part) };
        }
    };
    // SAFETY: AVX2 is present (the caller's guarantee); the arrays hold 8 draws and 8 values.
    let fast8 = |bits: &[u32; 16], vals: &mut [f32; 8]| unsafe {
        fast_path8_avx2(bits.as_ptr().cast(), vals.as_mut_ptr())
    };
    fill_chunked(rng, out, keystream, fast8)
}

/// The walk of the vector kernels: chunk by chunk, the keystream from the generator's word
/// position (`keystream(key, stream, first block, words)`), the fast path of every draw (`fast8`
/// on 8 draws' words, writing their values and returning the accepted ones), then a walk over
/// the draws in order: an accepted draw is the next value; a rejected one starts `rand_distr`'s
/// own sampling on a [`Replay`] of the keystream at its word, which takes as many words as it
/// takes from the generator.
#[inline(always)]
fn fill_chunked(
    rng: &mut ChaCha8Rng,
    out: &mut [f32],
    keystream: impl Fn(&[u32; 8], u64, u64, &mut [u32]),
    fast8: impl Fn(&[u32; 16], &mut [f32; 8]) -> u8,
) {
    let key = key_words(rng);
    let stream = rng.get_stream();
    // word positions below 2^68 (2^64 blocks); the streams drawn here stay far below 2^64
    let mut pos = rng.get_word_pos() as u64;
    let mut words = [0u32; CHUNK_BLOCKS * 16];
    let mut vals = [0f32; CHUNK_DRAWS];
    let mut ok = [0u8; CHUNK_DRAWS / 8];
    let mut k = 0;
    while k < out.len() {
        let first = pos / 16;
        keystream(&key, stream, first, &mut words);
        let chunk_start = first * 16;
        let off = (pos - chunk_start) as usize;
        for (g, m) in ok.iter_mut().enumerate() {
            // draw j is the little-endian u64 at word off + 2 j; the last group ends at word
            // off + 2 CHUNK_DRAWS <= 15 + 2 CHUNK_DRAWS <= 1024, inside `words`
            let (bits, to) = (
                &words[off + 16 * g..off + 16 * g + 16],
                &mut vals[8 * g..8 * g + 8],
            );
            *m = fast8(
                bits.try_into().expect("16 words"),
                to.try_into().expect("8 values"),
            );
        }
        // draw j of the chunk starts at word pos + 2 j
        let mut j = 0;
        while j < CHUNK_DRAWS && k < out.len() {
            let group = ok[j / 8];
            if j % 8 == 0 && group == 0xff && k + 8 <= out.len() {
                out[k..k + 8].copy_from_slice(&vals[j..j + 8]);
                k += 8;
                j += 8;
            } else if group >> (j % 8) & 1 == 1 {
                out[k] = vals[j];
                k += 1;
                j += 1;
            } else {
                let mut replay = Replay {
                    key: &key,
                    stream,
                    chunk: &words,
                    chunk_start,
                    pos: pos + 2 * j as u64,
                };
                let x: f64 = StandardNormal.sample(&mut replay);
                out[k] = x as f32;
                k += 1;
                // every draw of the normal sampler takes whole u64s (two words)
                j = ((replay.pos - pos) / 2) as usize;
            }
        }
        pos += 2 * j as u64;
    }
    rng.set_word_pos(u128::from(pos));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn keystream_matches_rand_chacha() {
        for (seed, stream) in [(0u64, 0u64), (7, 5), (123, u64::MAX - 3)] {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(stream);
            let key = key_words(&r);
            let words: Vec<u32> = (0..16 * 40).map(|_| r.next_u32()).collect();
            for b in 0..40 {
                assert_eq!(
                    block(&key, stream, b as u64)[..],
                    words[b * 16..b * 16 + 16]
                );
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                let mut out = [0u32; 256];
                // SAFETY: AVX-512F is present.
                unsafe { blocks16(&key, stream, 3, &mut out) };
                assert_eq!(out[..], words[48..48 + 256]);
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut out = [0u32; 128];
                // SAFETY: AVX2 is present.
                unsafe { blocks8(&key, stream, 5, &mut out) };
                assert_eq!(out[..], words[80..80 + 128]);
            }
        }
    }

    /// The kernels this processor runs.
    fn runnable() -> Vec<Kernels> {
        let mut k = vec![Kernels::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                k.push(Kernels::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                k.push(Kernels::Avx512);
            }
        }
        k
    }

    /// `fill` with every kernel this processor runs gives the bits of one-at-a-time sampling
    /// from any word position (odd ones included), for short and long runs (over several
    /// chunks, through rejections and the tail), and leaves the generator where one-at-a-time
    /// sampling leaves it.
    #[test]
    fn fill_matches_one_at_a_time_sampling() {
        assert!(runnable().contains(&Kernels::best()));
        for kernels in runnable() {
            fill_matches_with(kernels);
        }
    }

    fn fill_matches_with(kernels: Kernels) {
        for (seed, stream, skip, len) in [
            (1u64, 2u64, 0usize, 10_000usize),
            (2, 9, 1, 32_768),
            (3, 1, 3, 777),
            (4, 0, 5, 100_000),
            (5, 3, 2, 1),
            (6, 4, 0, 0),
        ] {
            let mut a = ChaCha8Rng::seed_from_u64(seed);
            a.set_stream(stream);
            for _ in 0..skip {
                a.next_u32();
            }
            let mut b = a.clone();
            let want: Vec<u32> = (0..len)
                .map(|_| a.sample::<f32, _>(StandardNormal).to_bits())
                .collect();
            let mut got = vec![0f32; len];
            fill_with(kernels, &mut b, &mut got);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            assert_eq!(want, got, "{kernels:?} seed {seed}");
            assert_eq!(
                a.get_word_pos(),
                b.get_word_pos(),
                "{kernels:?} seed {seed}"
            );
            assert_eq!(a.next_u64(), b.next_u64(), "{kernels:?} seed {seed}");
        }
    }
}
