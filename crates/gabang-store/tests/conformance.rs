//! The conformance suite (tests/support/suite.rs) run against both backends: the
//! embedded SQLite store and a real etcd started on loopback for each test.

mod support;

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = crate::support::sqlite().await;
                    crate::support::suite::$name(h.backend.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let h = crate::support::etcd().await;
                    crate::support::suite::$name(h.backend.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    crud_and_revisions,
    cas_conflicts,
    watch_exactly_once_in_order,
    watch_resume_from_revision,
    compaction,
    list_pagination_at_one_revision,
    leases_expire,
    size_limits,
);
