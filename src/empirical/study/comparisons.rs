//! The comparisons a study reports, as a reviewer reads them.
