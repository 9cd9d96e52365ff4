//! Wall-clock strings for the wire contract (`2026-01-02T12:21:45.755329Z`).
//!
//! Staleness never uses these: it is judged on the monotonic clock in [`crate::registry`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
pub fn unix_micros_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Appends `micros` since the epoch as ISO-8601 UTC with six fractional digits and a `Z`.
///
/// `GET /peers` formats one of these per peer per answer, so digits are written in pairs from a
/// table into a stack buffer, with one copy into `out`.
pub fn push_iso8601(out: &mut Vec<u8>, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return push_iso8601_slow(out, y, m, d, sod, frac);
    }
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    put2(&mut b[0..2], y / 100);
    put2(&mut b[2..4], y % 100);
    put2(&mut b[5..7], i64::from(m));
    put2(&mut b[8..10], i64::from(d));
    put2(&mut b[11..13], sod / 3600);
    put2(&mut b[14..16], (sod / 60) % 60);
    put2(&mut b[17..19], sod % 60);
    put2(&mut b[20..22], frac / 10_000);
    put2(&mut b[22..24], (frac / 100) % 100);
    put2(&mut b[24..26], frac % 100);
    out.extend_from_slice(&b);
}

/// `"00" "01" .. "99"`.
static PAIRS: [u8; 200] = two_digit_pairs();

const fn two_digit_pairs() -> [u8; 200] {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
}

/// Writes `n` (0..=99) as two digits.
fn put2(dst: &mut [u8], n: i64) {
    let i = usize::try_from(n).unwrap_or(0).min(99) * 2;
    dst.copy_from_slice(&PAIRS[i..i + 2]);
}

/// Years outside 0..=9999 (never seen on a real clock, kept exact anyway).
fn push_iso8601_slow(out: &mut Vec<u8>, y: i64, m: u32, d: u32, sod: i64, frac: i64) {
    push_num(out, y, 4);
    out.push(b'-');
    push_num(out, i64::from(m), 2);
    out.push(b'-');
    push_num(out, i64::from(d), 2);
    out.push(b'T');
    push_num(out, sod / 3600, 2);
    out.push(b':');
    push_num(out, (sod / 60) % 60, 2);
    out.push(b':');
    push_num(out, sod % 60, 2);
    out.push(b'.');
    push_num(out, frac, 6);
    out.push(b'Z');
}

/// `micros` since the epoch as an ISO-8601 string (see [`push_iso8601`]).
pub fn iso8601(micros: i64) -> String {
    let mut v = Vec::with_capacity(27);
    push_iso8601(&mut v, micros);
    String::from_utf8(v).unwrap_or_default()
}

fn push_num(out: &mut Vec<u8>, mut n: i64, width: usize) {
    if n < 0 {
        out.push(b'-');
        n = -n;
    }
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = buf.len() - i;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_time_crate() {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        for micros in [
            0i64,
            1_767_356_505_755_329,
            951_782_400_000_001,
            4_102_444_799_999_999,
            -1,
            1_709_164_800_123_456,
            253_402_300_799_999_999,
        ] {
            let t =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
            assert_eq!(iso8601(micros), t.format(&fmt).unwrap(), "micros {micros}");
        }
        assert_eq!(
            iso8601(1_767_356_505_755_329),
            "2026-01-02T12:21:45.755329Z"
        );
    }
}
