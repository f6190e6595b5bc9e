//! The element-wise and per-channel loops of the channels-last kernels, written in lanes of
//! [`L`] channels (`[f32; 8]` values that the compiler keeps in vector registers) and compiled
//! twice: for the baseline x86-64 target and with AVX2 and FMA enabled, chosen at run time.
//! Both versions do the same operations in the same order on every value (Rust never fuses a
//! multiplication and an addition on its own), so they give the same bits. Channel counts that
//! are not a multiple of [`L`] take a plain per-channel loop with, again, the same order of
//! operations per value.

/// Channels per lane.
pub(super) const L: usize = 8;

/// Pixels summed in `f32` before their sums are added to the `f64` totals.
pub(super) const SUM_BLOCK: usize = 16;

type Lane = [f32; L];

/// Defines `fn $name(...)` that runs its body compiled with AVX2 and FMA when the CPU has
/// them, and compiled for the baseline target otherwise.
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `fast` is compiled for.
                    unsafe { fast($($arg),*) };
                    return;
                }
            }
            imp($($arg),*)
        }
    };
}

/// Asks for the cache lines of `s[o..o + len]` (inside `s`) ahead of their use.
#[inline(always)]
fn prefetch(s: &[f32], o: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let end = (o + len).min(s.len());
        let mut i = o;
        while i < end {
            // SAFETY: a prefetch never faults, and the address is inside `s`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    s.as_ptr().add(i).cast(),
                )
            };
            i += 16;
        }
    }
}

#[inline(always)]
fn ld(s: &[f32], o: usize) -> Lane {
    let mut v = [0f32; L];
    v.copy_from_slice(&s[o..o + L]);
    v
}

#[inline(always)]
fn st(d: &mut [f32], o: usize, v: Lane) {
    d[o..o + L].copy_from_slice(&v);
}

multiversion! {
    /// Adds the per-channel sums and sums of squares of the pixels of `img` (`c` channels)
    /// to `sum` and `sq`: in `f32` over blocks of [`SUM_BLOCK`] pixels, then in `f64`.
    pub(super) fn channel_sums(img: &[f32], c: usize, sum: &mut [f64], sq: &mut [f64]) {
        let pixels = img.len() / c;
        for p0 in (0..pixels).step_by(SUM_BLOCK) {
            let p1 = (p0 + SUM_BLOCK).min(pixels);
            if c.is_multiple_of(L) {
                for g in (0..c).step_by(L) {
                    let (mut s, mut q) = ([0f32; L], [0f32; L]);
                    for p in p0..p1 {
                        let v = ld(img, p * c + g);
                        for j in 0..L {
                            s[j] += v[j];
                            q[j] += v[j] * v[j];
                        }
                    }
                    for j in 0..L {
                        sum[g + j] += f64::from(s[j]);
                        sq[g + j] += f64::from(q[j]);
                    }
                }
            } else {
                for ch in 0..c {
                    let (mut s, mut q) = (0f32, 0f32);
                    for p in p0..p1 {
                        let v = img[p * c + ch];
                        s += v;
                        q += v * v;
                    }
                    sum[ch] += f64::from(s);
                    sq[ch] += f64::from(q);
                }
            }
        }
    }
}

multiversion! {
    /// `out = max(a x + b, 0)` per channel.
    pub(super) fn affine_relu(x: &[f32], a: &[f32], b: &[f32], c: usize, out: &mut [f32]) {
        if c.is_multiple_of(L) {
            for o in (0..x.len()).step_by(c) {
                for g in (0..c).step_by(L) {
                    let (v, a, b) = (ld(x, o + g), ld(a, g), ld(b, g));
                    let mut r = [0f32; L];
                    for j in 0..L {
                        r[j] = (v[j] * a[j] + b[j]).max(0.0);
                    }
                    st(out, o + g, r);
                }
            }
        } else {
            for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                let ch = i % c;
                *o = (v * a[ch] + b[ch]).max(0.0);
            }
        }
    }
}

multiversion! {
    /// `out = max(a x + b + s, 0)` per channel.
    pub(super) fn affine_add_relu(
        x: &[f32],
        a: &[f32],
        b: &[f32],
        s: &[f32],
        c: usize,
        out: &mut [f32],
    ) {
        if c.is_multiple_of(L) {
            for o in (0..x.len()).step_by(c) {
                for g in (0..c).step_by(L) {
                    let (v, a, b, s) = (ld(x, o + g), ld(a, g), ld(b, g), ld(s, o + g));
                    let mut r = [0f32; L];
                    for j in 0..L {
                        r[j] = (v[j] * a[j] + b[j] + s[j]).max(0.0);
                    }
                    st(out, o + g, r);
                }
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                let ch = i % c;
                *o = (x[i] * a[ch] + b[ch] + s[i]).max(0.0);
            }
        }
    }
}

multiversion! {
    /// `out = max(a x + b + (a2 s + b2), 0)` per channel.
    pub(super) fn affine_add_affine_relu(
        x: &[f32],
        a: &[f32],
        b: &[f32],
        s: &[f32],
        a2: &[f32],
        b2: &[f32],
        c: usize,
        out: &mut [f32],
    ) {
        if c.is_multiple_of(L) {
            for o in (0..x.len()).step_by(c) {
                for g in (0..c).step_by(L) {
                    let (v, a, b) = (ld(x, o + g), ld(a, g), ld(b, g));
                    let (s, a2, b2) = (ld(s, o + g), ld(a2, g), ld(b2, g));
                    let mut r = [0f32; L];
                    for j in 0..L {
                        r[j] = (v[j] * a[j] + b[j] + (s[j] * a2[j] + b2[j])).max(0.0);
                    }
                    st(out, o + g, r);
                }
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                let ch = i % c;
                *o = (x[i] * a[ch] + b[ch] + (s[i] * a2[ch] + b2[ch])).max(0.0);
            }
        }
    }
}

multiversion! {
    /// `out = a dz + b x + k` per channel.
    pub(super) fn affine3(
        dz: &[f32],
        x: &[f32],
        a: &[f32],
        b: &[f32],
        k: &[f32],
        c: usize,
        out: &mut [f32],
    ) {
        if c.is_multiple_of(L) {
            for o in (0..x.len()).step_by(c) {
                for g in (0..c).step_by(L) {
                    let (d, v) = (ld(dz, o + g), ld(x, o + g));
                    let (a, b, k) = (ld(a, g), ld(b, g), ld(k, g));
                    let mut r = [0f32; L];
                    for j in 0..L {
                        r[j] = a[j] * d[j] + b[j] * v[j] + k[j];
                    }
                    st(out, o + g, r);
                }
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                let ch = i % c;
                *o = a[ch] * dz[i] + b[ch] * x[i] + k[ch];
            }
        }
    }
}

multiversion! {
    /// [`affine3`] writing over `dz`.
    pub(super) fn affine3_inplace(
        dz: &mut [f32],
        x: &[f32],
        a: &[f32],
        b: &[f32],
        k: &[f32],
        c: usize,
    ) {
        if c.is_multiple_of(L) {
            for o in (0..x.len()).step_by(c) {
                for g in (0..c).step_by(L) {
                    let (d, v) = (ld(dz, o + g), ld(x, o + g));
                    let (a, b, k) = (ld(a, g), ld(b, g), ld(k, g));
                    let mut r = [0f32; L];
                    for j in 0..L {
                        r[j] = a[j] * d[j] + b[j] * v[j] + k[j];
                    }
                    st(dz, o + g, r);
                }
            }
        } else {
            for (i, d) in dz.iter_mut().enumerate() {
                let ch = i % c;
                *d = a[ch] * *d + b[ch] * x[i] + k[ch];
            }
        }
    }
}

/// The ReLU input that [`mask_reduce`] keeps the gradient where it is positive (the ReLU's
/// output is positive exactly there); per pixel offset `o` and channel.
#[derive(Clone, Copy)]
pub(super) enum Relu<'a> {
    /// The ReLU's output `y`, as stored.
    Output(&'a [f32]),
    /// `a x1 + b` (per channel): the ReLU of [`affine_relu`] recomputed from `mask_reduce`'s
    /// `x1`, the same operations in the same order, so the same bits as its output.
    Affine(&'a [f32], &'a [f32]),
    /// `(a x1 + b) + (a2 x2 + b2)`: the ReLU of [`affine_add_affine_relu`] recomputed from
    /// `x1` and `x2`.
    AffineSum(&'a [f32], &'a [f32], &'a [f32], &'a [f32]),
}

impl Relu<'_> {
    /// The lane of channels `g..g + L` at offset `o` (`v` is `x1`'s lane there).
    #[inline(always)]
    fn lane(&self, o: usize, g: usize, v: &Lane, x2: &[f32]) -> Lane {
        match *self {
            Relu::Output(y) => ld(y, o),
            Relu::Affine(a, b) => {
                let (a, b) = (ld(a, g), ld(b, g));
                let mut r = [0f32; L];
                for j in 0..L {
                    r[j] = v[j] * a[j] + b[j];
                }
                r
            }
            Relu::AffineSum(a, b, a2, b2) => {
                let (a, b, s, a2, b2) = (ld(a, g), ld(b, g), ld(x2, o), ld(a2, g), ld(b2, g));
                let mut r = [0f32; L];
                for j in 0..L {
                    r[j] = v[j] * a[j] + b[j] + (s[j] * a2[j] + b2[j]);
                }
                r
            }
        }
    }

    /// The value at offset `o`, channel `ch`.
    #[inline(always)]
    fn value(&self, o: usize, ch: usize, x1: &[f32], x2: &[f32]) -> f32 {
        match *self {
            Relu::Output(y) => y[o],
            Relu::Affine(a, b) => x1[o] * a[ch] + b[ch],
            Relu::AffineSum(a, b, a2, b2) => x1[o] * a[ch] + b[ch] + (x2[o] * a2[ch] + b2[ch]),
        }
    }
}

multiversion! {
    /// One image of the ReLU backward pass fused with the BatchNorm reductions: sets
    /// `dz = dz * (relu > 0)` and adds to `total` (`[sum dz, sum dz (x1 - m1), sum dz (x2 - m2)]`
    /// per channel, the last only when `x2` is not empty) in `f32` over blocks of
    /// [`SUM_BLOCK`] pixels, then in `f64`.
    pub(super) fn mask_reduce(
        dz: &mut [f32],
        relu: Relu<'_>,
        x1: &[f32],
        m1: &[f32],
        x2: &[f32],
        m2: &[f32],
        c: usize,
        total: &mut [f64],
    ) {
        let two = !x2.is_empty();
        let pixels = dz.len() / c;
        for p0 in (0..pixels).step_by(SUM_BLOCK) {
            let p1 = (p0 + SUM_BLOCK).min(pixels);
            // The BatchNorm inputs come from memory (the gradient is often in cache): ask for
            // them four blocks ahead.
            prefetch(x1, (p0 + 4 * SUM_BLOCK) * c, SUM_BLOCK * c);
            prefetch(x2, (p0 + 4 * SUM_BLOCK) * c, SUM_BLOCK * c);
            if let Relu::Output(y) = relu {
                prefetch(y, (p0 + 4 * SUM_BLOCK) * c, SUM_BLOCK * c);
            }
            if c.is_multiple_of(L) {
                for g in (0..c).step_by(L) {
                    let (mut sd, mut s1, mut s2) = ([0f32; L], [0f32; L], [0f32; L]);
                    let (m1, m2) = (ld(m1, g), if two { ld(m2, g) } else { [0f32; L] });
                    for p in p0..p1 {
                        let o = p * c + g;
                        let (mut d, v) = (ld(dz, o), ld(x1, o));
                        let y = relu.lane(o, g, &v, x2);
                        for j in 0..L {
                            d[j] = if y[j] > 0.0 { d[j] } else { 0.0 };
                            sd[j] += d[j];
                            s1[j] += d[j] * (v[j] - m1[j]);
                        }
                        st(dz, o, d);
                        if two {
                            let v = ld(x2, o);
                            for j in 0..L {
                                s2[j] += d[j] * (v[j] - m2[j]);
                            }
                        }
                    }
                    for j in 0..L {
                        total[g + j] += f64::from(sd[j]);
                        total[c + g + j] += f64::from(s1[j]);
                        if two {
                            total[2 * c + g + j] += f64::from(s2[j]);
                        }
                    }
                }
            } else {
                for ch in 0..c {
                    let (mut sd, mut s1, mut s2) = (0f32, 0f32, 0f32);
                    for p in p0..p1 {
                        let o = p * c + ch;
                        let d = if relu.value(o, ch, x1, x2) > 0.0 { dz[o] } else { 0.0 };
                        dz[o] = d;
                        sd += d;
                        s1 += d * (x1[o] - m1[ch]);
                        if two {
                            s2 += d * (x2[o] - m2[ch]);
                        }
                    }
                    total[ch] += f64::from(sd);
                    total[c + ch] += f64::from(s1);
                    if two {
                        total[2 * c + ch] += f64::from(s2);
                    }
                }
            }
        }
    }
}
