//! Latency histograms: HdrHistogram (3 significant digits, 1 ns to 60 s) behind the small
//! API the reports use, plus a text form so that load processes can hand their histograms
//! to the process that merges them (counts, not percentiles, can be added up).

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// The largest value kept apart (nanoseconds); larger ones count as this.
const HIGHEST: u64 = 60_000_000_000;
/// Significant decimal digits kept (values within 0.1%).
const DIGITS: u8 = 3;

/// Counts of nanosecond values.
#[derive(Clone, Debug)]
pub struct Histogram(hdrhistogram::Histogram<u64>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(
            hdrhistogram::Histogram::new_with_bounds(1, HIGHEST, DIGITS)
                .expect("constant bounds are valid"),
        )
    }
}

impl Histogram {
    /// Records one value (nanoseconds); beyond 60 s it counts as 60 s.
    pub fn record(&mut self, v: u64) {
        self.0.saturating_record(v);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        // Both have the same bounds, so no value of `other` is out of range.
        let _ = self.0.add(&other.0);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.value_at_quantile(q.clamp(0.0, 1.0))
    }

    /// The largest value recorded (to 0.1%).
    pub fn max(&self) -> u64 {
        self.0.max()
    }

    /// The histogram as base64 text (HdrHistogram's V2 encoding), for a JSON report.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        // Writing into a Vec fails only for histograms too large to encode, which one
        // with these bounds is not.
        let _ = V2Serializer::new().serialize(&self.0, &mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads what [`Histogram::to_base64`] wrote; `None` if it is not such text.
    pub fn from_base64(text: &str) -> Option<Histogram> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        let read: hdrhistogram::Histogram<u64> =
            Deserializer::new().deserialize(&mut &bytes[..]).ok()?;
        let mut h = Histogram::default();
        h.0.add(&read).ok()?;
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_a_thousandth() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), 0);
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let near = |got: u64, want: f64| (got as f64 / want - 1.0).abs() < 0.001;
        assert!(near(h.quantile(0.5), 5_000_000.0), "{}", h.quantile(0.5));
        assert!(near(h.quantile(0.99), 9_900_000.0), "{}", h.quantile(0.99));
        assert!(near(h.quantile(1.0), 10_000_000.0), "{}", h.quantile(1.0));
        assert!(near(h.max(), 10_000_000.0));
        assert_eq!(h.count(), 10_000);
        h.record(u64::MAX);
        assert!(near(h.max(), HIGHEST as f64));
    }

    #[test]
    fn merges_and_survives_the_text_form() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        for v in 0..1000u64 {
            a.record(1_000 + v);
            b.record(1_000_000 + v * 1000);
        }
        let b2 = Histogram::from_base64(&b.to_base64()).expect("round trip");
        assert_eq!(b2.count(), 1000);
        assert_eq!(b2.quantile(0.5), b.quantile(0.5));
        a.merge(&b2);
        assert_eq!(a.count(), 2000);
        assert!(a.quantile(0.25) < 2_000 && a.quantile(0.75) > 1_000_000);
        assert!(Histogram::from_base64("not a histogram").is_none());
        assert!(Histogram::from_base64("").is_none());
    }
}
