//! Counters conformance suite: every test runs against `MemoryCounters` (always) and
//! `RedisCounters` (when `GATEHOUSE_TEST_REDIS_URL` is set, with a unique key prefix per test;
//! otherwise it prints `skipped: <name> (GATEHOUSE_TEST_REDIS_URL not set)`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_store::counters::{Adjustment, Bucket, Counters, Decision, Window, window_at};
use gatehouse_store::{MemoryCounters, RedisCounters};
use gatehouse_types::new_id;

const REDIS_ENV: &str = "GATEHOUSE_TEST_REDIS_URL";
const TTL: Duration = Duration::from_secs(60);

async fn redis(name: &str) -> Option<Arc<dyn Counters>> {
    let Ok(url) = std::env::var(REDIS_ENV) else {
        println!("skipped: {name} ({REDIS_ENV} not set)");
        return None;
    };
    let prefix = format!("gh-test:{}:", new_id().simple());
    Some(Arc::new(
        RedisCounters::connect(&url, &prefix).await.unwrap(),
    ))
}

macro_rules! counters_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                let c: Arc<dyn Counters> = Arc::new(MemoryCounters::new());
                ($body)(c).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis() {
                if let Some(c) = super::redis(concat!(stringify!($name), "::redis")).await {
                    ($body)(c).await;
                }
            }
        }
    };
}

fn bucket(key: &str, window: Window, limit: u64, cost: u64) -> Bucket {
    Bucket {
        key: key.into(),
        window,
        limit,
        cost,
    }
}

fn admitted(d: &Decision) -> bool {
    matches!(d, Decision::Admitted { .. })
}

/// Waits until the current minute has at least `ms` left, so a test that fills a minute window
/// never straddles a window boundary (keeps the assertion exact, not timing-dependent).
async fn fresh_minute(c: &dyn Counters, ms: u64) {
    loop {
        let s = c
            .peek(&[bucket("probe", Window::Minute, 0, 0)])
            .await
            .unwrap();
        if s[0].reset_ms >= ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(s[0].reset_ms + 50)).await;
    }
}

counters_test!(
    admits_until_limit_then_denies,
    |c: Arc<dyn Counters>| async move {
        fresh_minute(&*c, 10_000).await;
        let b = [bucket("rpm:k", Window::Minute, 3, 1)];
        for expected in 1..=3 {
            match c.acquire(&b, "l", TTL).await.unwrap() {
                Decision::Admitted { states } => assert_eq!(states[0].used, expected),
                d => panic!("{d:?}"),
            }
        }
        match c.acquire(&b, "l", TTL).await.unwrap() {
            Decision::Denied {
                bucket,
                retry_after_ms,
                states,
            } => {
                assert_eq!(bucket, 0);
                assert_eq!(states[0].used, 3, "a denial charges nothing");
                assert!(
                    retry_after_ms > 0 && retry_after_ms <= 60_000,
                    "{retry_after_ms}"
                );
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(c.peek(&b).await.unwrap()[0].used, 3);
    }
);

counters_test!(all_or_nothing, |c: Arc<dyn Counters>| async move {
    fresh_minute(&*c, 10_000).await;
    let roomy = bucket("rpm:team", Window::Minute, 100, 1);
    let tight = bucket("tpd:key", Window::Day, 10, 8);
    assert!(admitted(
        &c.acquire(&[roomy.clone(), tight.clone()], "a", TTL)
            .await
            .unwrap()
    ));
    // The second request does not fit the tight bucket: neither bucket may be charged.
    match c
        .acquire(&[roomy.clone(), tight.clone()], "b", TTL)
        .await
        .unwrap()
    {
        Decision::Denied { bucket, .. } => assert_eq!(bucket, 1),
        d => panic!("{d:?}"),
    }
    let s = c.peek(&[roomy, tight]).await.unwrap();
    assert_eq!((s[0].used, s[1].used), (1, 8));
});

counters_test!(settle_corrects_in_the_charged_window, |c: Arc<
    dyn Counters,
>| async move {
    let b = bucket("tpm:k", Window::Day, 1000, 500);
    let Decision::Admitted { states } = c.acquire(&[b.clone()], "l", TTL).await.unwrap() else {
        panic!()
    };
    let w = states[0].window_id;
    c.settle(&[Adjustment {
        key: b.key.clone(),
        window_id: w,
        delta: -380,
    }])
    .await
    .unwrap();
    assert_eq!(c.peek(&[b.clone()]).await.unwrap()[0].used, 120);
    c.settle(&[Adjustment {
        key: b.key.clone(),
        window_id: w,
        delta: 30,
    }])
    .await
    .unwrap();
    assert_eq!(c.peek(&[b.clone()]).await.unwrap()[0].used, 150);
    // Never below zero; a correction for another window is dropped.
    c.settle(&[Adjustment {
        key: b.key.clone(),
        window_id: w,
        delta: -10_000,
    }])
    .await
    .unwrap();
    assert_eq!(c.peek(&[b.clone()]).await.unwrap()[0].used, 0);
    c.settle(&[Adjustment {
        key: b.key.clone(),
        window_id: w - 1,
        delta: 70,
    }])
    .await
    .unwrap();
    assert_eq!(c.peek(&[b]).await.unwrap()[0].used, 0);
});

counters_test!(concurrency_leases, |c: Arc<dyn Counters>| async move {
    let b = [bucket("conc:k", Window::Concurrent, 2, 0)];
    assert!(admitted(&c.acquire(&b, "r1", TTL).await.unwrap()));
    assert!(admitted(&c.acquire(&b, "r2", TTL).await.unwrap()));
    match c.acquire(&b, "r3", TTL).await.unwrap() {
        Decision::Denied {
            retry_after_ms,
            states,
            ..
        } => {
            assert_eq!(states[0].used, 2);
            assert_eq!(retry_after_ms, 1000);
        }
        d => panic!("{d:?}"),
    }
    c.release(&["conc:k".to_string()], "r1").await.unwrap();
    c.release(&["conc:k".to_string()], "r1").await.unwrap(); // idempotent
    assert_eq!(c.peek(&b).await.unwrap()[0].used, 1);
    assert!(admitted(&c.acquire(&b, "r3", TTL).await.unwrap()));
});

counters_test!(
    expired_leases_free_capacity,
    |c: Arc<dyn Counters>| async move {
        let b = [bucket("conc:crashed", Window::Concurrent, 1, 0)];
        // A lease that is already expired when the next request looks (a node that died).
        assert!(admitted(
            &c.acquire(&b, "dead", Duration::from_millis(0))
                .await
                .unwrap()
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(admitted(&c.acquire(&b, "alive", TTL).await.unwrap()));
        assert_eq!(c.peek(&b).await.unwrap()[0].used, 1);
    }
);

counters_test!(
    windows_follow_the_calendar,
    |c: Arc<dyn Counters>| async move {
        let b = [
            bucket("w:m", Window::Minute, 10, 1),
            bucket("w:d", Window::Day, 10, 1),
            bucket("w:M", Window::Month, 10, 1),
        ];
        let local =
            i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                .unwrap();
        let s = c.peek(&b).await.unwrap();
        // Same machine: the backend's clock agrees with ours to well within a day and a month.
        let (day, _) = window_at(Window::Day, local);
        let (month, _) = window_at(Window::Month, local);
        assert!((s[1].window_id - day).abs() <= 1, "{s:?}");
        assert!((s[2].window_id - month).abs() <= 1, "{s:?}");
        assert!(
            s[0].reset_ms <= 60_000
                && s[1].reset_ms <= 86_400_000
                && s[2].reset_ms <= 31 * 86_400_000
        );
        let (_, month_reset) = window_at(Window::Month, local);
        assert!(
            s[2].reset_ms.abs_diff(month_reset) < 60_000,
            "{s:?} vs {month_reset}"
        );
    }
);

counters_test!(two_hundred_concurrent_against_fifty, |c: Arc<
    dyn Counters,
>| async move {
    fresh_minute(&*c, 20_000).await;
    let buckets = Arc::new(vec![
        bucket("rpm:key:hot", Window::Minute, 50, 1),
        bucket("rpm:team:hot", Window::Minute, 1000, 1),
    ]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        let b = buckets.clone();
        tasks.push(tokio::spawn(async move {
            admitted(&c.acquire(&b, &format!("r{i}"), TTL).await.unwrap())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 50);
    let s = c.peek(&buckets).await.unwrap();
    assert_eq!(
        (s[0].used, s[1].used),
        (50, 50),
        "denied requests charge no bucket"
    );
});

counters_test!(token_overrun_bounded_by_in_flight_estimates, |c: Arc<
    dyn Counters,
>| async move {
    // 40 concurrent requests each reserve an estimate of 100 tokens against 1000/day; each
    // really uses 130. Admission stops at 10 in-flight reservations, so after settlement the
    // overrun is at most (in-flight admitted) x (real - estimate) = 10 x 30.
    let b = bucket("tpd:team:x", Window::Day, 1000, 100);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = c.clone();
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            match c
                .acquire(&[b.clone()], &format!("r{i}"), TTL)
                .await
                .unwrap()
            {
                Decision::Admitted { states } => {
                    c.settle(&[Adjustment {
                        key: b.key.clone(),
                        window_id: states[0].window_id,
                        delta: 30,
                    }])
                    .await
                    .unwrap();
                    1
                }
                Decision::Denied { .. } => 0,
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let used = c.peek(&[b]).await.unwrap()[0].used;
    assert!(ok >= 7 && ok <= 10, "admitted {ok}");
    assert!(used <= 1000 + 10 * 30, "used {used}");
    assert_eq!(used, ok * 130);
});
