//! Which sessions are live, remembered per process so that an authenticated request does not
//! need a PostgreSQL round trip.
//!
//! A revoked session must stop working at once, on every instance. So:
//! - a trigger on `auth.sessions` sends `NOTIFY auth_session_revoked` with the session id in
//!   the revoking transaction (delivered when it commits), and each process LISTENs and
//!   forgets that session;
//! - the instance that revokes forgets the session itself before it answers, so its own next
//!   request sees the revocation with no delay (other instances see it after the
//!   notification's delivery, milliseconds);
//! - the cache answers only while the listener is connected; when the connection is lost
//!   (notifications may have been missed) the cache is emptied and bypassed until LISTEN is
//!   active again;
//! - a lookup that raced with a revocation cannot put a stale "live" back: every forget bumps
//!   a generation, and an entry is stored only if the generation is the one read before the
//!   query;
//! - entries expire after [`TTL`] in any case, a bound on staleness should a connection die
//!   without the listener noticing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::watch;
use uuid::Uuid;

/// The channel the `auth.sessions` trigger notifies.
pub const CHANNEL: &str = "auth_session_revoked";
/// How long a session's liveness is trusted without asking PostgreSQL again.
pub const TTL: Duration = Duration::from_secs(10);
/// Entries kept at most (expired ones are dropped first when full).
const CAPACITY: usize = 100_000;

#[derive(Default)]
struct Inner {
    live: HashMap<Uuid, Instant>,
    generation: u64,
}

/// Live sessions seen recently. See the module documentation for why it is safe.
pub struct SessionCache {
    inner: Mutex<Inner>,
    listening: AtomicBool,
    /// Dropped with the cache, which stops the listener.
    dropped: watch::Sender<()>,
}

impl SessionCache {
    /// A cache kept in step with the database by a background listener (none outside a
    /// tokio runtime: then every lookup goes to PostgreSQL).
    pub fn listening_to(pool: &PgPool) -> Arc<SessionCache> {
        let cache = Arc::new(SessionCache {
            inner: Mutex::default(),
            listening: AtomicBool::new(false),
            dropped: watch::channel(()).0,
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let dropped = cache.dropped.subscribe();
            tokio::spawn(listen(Arc::downgrade(&cache), dropped, pool.clone()));
        }
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the listener is connected (the cache answers only then).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Whether `session` is known live (false: ask the database).
    pub fn is_live(&self, session: Uuid) -> bool {
        self.listening.load(Ordering::Acquire)
            && self
                .lock()
                .live
                .get(&session)
                .is_some_and(|at| at.elapsed() < TTL)
    }

    /// The generation to pass to [`SessionCache::remember`] after asking the database.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Records that the database said `session` is live, unless something was forgotten
    /// since `generation` was read (the answer may be stale then).
    pub fn remember(&self, session: Uuid, generation: u64) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.live.len() >= CAPACITY {
            inner.live.retain(|_, at| at.elapsed() < TTL);
            if inner.live.len() >= CAPACITY {
                inner.live.clear();
            }
        }
        inner.live.insert(session, Instant::now());
    }

    /// The session was revoked: ask the database next time.
    pub fn forget(&self, session: Uuid) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.live.remove(&session);
    }

    fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.live.clear();
    }

    fn set_listening(&self, on: bool) {
        if !on {
            self.listening.store(false, Ordering::Release);
        }
        // Whatever was learnt before this point may have missed a notification.
        self.forget_all();
        if on {
            self.listening.store(true, Ordering::Release);
        }
    }
}

/// Keeps `cache` in step with revocations until the cache is dropped or the pool closed.
async fn listen(cache: Weak<SessionCache>, mut dropped: watch::Receiver<()>, pool: PgPool) {
    // A connection of its own, so that the service's pool keeps all of its connections.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        let mut listener = match connected {
            Ok(l) => l,
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "session revocations: cannot LISTEN; sessions are checked in PostgreSQL meanwhile");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = dropped.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        match cache.upgrade() {
            Some(c) => c.set_listening(true),
            None => return,
        }
        loop {
            let next = tokio::select! {
                next = listener.try_recv() => next,
                _ = dropped.changed() => return,
            };
            let Some(c) = cache.upgrade() else { return };
            match next {
                Ok(Some(n)) => match n.payload().parse::<Uuid>() {
                    Ok(id) => c.forget(id),
                    Err(_) => c.forget_all(),
                },
                // The connection was lost and made again: notifications may be missing.
                Ok(None) => c.set_listening(true),
                Err(sqlx::Error::PoolClosed) => {
                    c.set_listening(false);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "session revocations: listener failed; reconnecting");
                    c.set_listening(false);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> SessionCache {
        let c = SessionCache {
            inner: Mutex::default(),
            listening: AtomicBool::new(false),
            dropped: watch::channel(()).0,
        };
        c.set_listening(true);
        c
    }

    #[test]
    fn a_lookup_older_than_a_revocation_is_not_remembered() {
        let (c, a, b) = (cache(), Uuid::now_v7(), Uuid::now_v7());
        let before = c.generation();
        // Revoked while the lookup of `a` was in flight: its "live" may be stale.
        c.forget(b);
        c.remember(a, before);
        assert!(!c.is_live(a));
        c.remember(a, c.generation());
        assert!(c.is_live(a));
        c.forget(a);
        assert!(!c.is_live(a));
    }

    #[test]
    fn nothing_is_trusted_while_the_listener_is_away() {
        let (c, a) = (cache(), Uuid::now_v7());
        c.remember(a, c.generation());
        assert!(c.is_live(a));
        c.set_listening(false);
        assert!(!c.is_live(a));
        c.remember(a, c.generation());
        c.set_listening(true);
        assert!(
            !c.is_live(a),
            "what was learnt before reconnecting is dropped"
        );
    }
}
