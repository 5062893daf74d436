//! Login attempt limits: failed logins counted per account and per IP in fixed windows.
//! In memory, per process: enough for one instance; several instances each count alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimiter {
    window: Duration,
    per_account: u32,
    per_ip: u32,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(Duration::from_secs(15 * 60), 5, 20)
    }
}

impl LoginLimiter {
    pub fn new(window: Duration, per_account: u32, per_ip: u32) -> Self {
        LoginLimiter {
            window,
            per_account,
            per_ip,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when the account or the IP is over its limit.
    pub fn check(&self, account: &str, ip: &str) -> Result<(), u64> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = 0;
        for (key, limit) in [
            (format!("a:{account}"), self.per_account),
            (format!("i:{ip}"), self.per_ip),
        ] {
            if let Some((count, start)) = map.get(&key)
                && *count >= limit
                && now.duration_since(*start) < self.window
            {
                let left = self.window - now.duration_since(*start);
                wait = wait.max(left.as_secs().max(1));
            }
        }
        if wait > 0 { Err(wait) } else { Ok(()) }
    }

    pub fn record_failure(&self, account: &str, ip: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in [format!("a:{account}"), format!("i:{ip}")] {
            let entry = map.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, start)| now.duration_since(*start) < window);
        }
    }

    pub fn record_success(&self, account: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&format!("a:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_ips_are_limited_separately() {
        let l = LoginLimiter::new(Duration::from_secs(60), 2, 3);
        l.record_failure("a@x", "1.1.1.1");
        assert!(l.check("a@x", "1.1.1.1").is_ok());
        l.record_failure("a@x", "1.1.1.1");
        assert!(l.check("a@x", "9.9.9.9").is_err(), "account limit");
        assert!(l.check("b@x", "1.1.1.1").is_ok());
        l.record_failure("b@x", "1.1.1.1");
        assert!(l.check("c@x", "1.1.1.1").is_err(), "ip limit");
        l.record_success("a@x");
        assert!(l.check("a@x", "2.2.2.2").is_ok());
    }
}
