//! The service's one helper for random values, over the one source the project uses:
//! the operating system's entropy through `getrandom` (the libraries below this crate,
//! `objstore`'s salts and nonces, call `getrandom` directly). There is no fallback: a
//! value that should be unpredictable (a replication password, an API token, an auth
//! nonce) is never made from the clock.

/// The OS random source failed; the caller fails the step that needed the value (the
/// OS source does not fail on a working Linux system after early boot).
#[derive(Debug, thiserror::Error)]
#[error("the OS random source failed: {0}")]
pub struct RandomError(#[from] pub getrandom::Error);

/// `N` random bytes.
///
/// # Errors
///
/// [`RandomError`] when the OS source fails.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)?;
    Ok(b)
}

/// `n` random bytes as `2 * n` lower-case hex digits.
///
/// # Errors
///
/// [`RandomError`] when the OS source fails.
pub fn hex(n: usize) -> Result<String, RandomError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ_and_have_their_length() {
        let a = super::hex(16).unwrap();
        let b = super::hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert_ne!(super::bytes::<20>().unwrap(), [0u8; 20]);
    }
}
