//! Recovery as a pure function: what the state store and the sinks hold goes in, what
//! to restore and what each sink must do comes out. No I/O here, so every case is
//! unit-tested.
//!
//! The protocol behind it (two-phase commit per checkpoint): every sink pre-commits
//! checkpoint *n* (its write-ahead log of the epoch is sealed), then the state store
//! records *n* as complete, then each sink commits *n*. So after a crash, with *c* the
//! last complete checkpoint, every sink that took part has committed *c* or *c − 1*,
//! and one at *c − 1* has the epoch of *c* in its log, or kept it prepared itself
//! (`Sink::keeps_prepared`: the file sinks).

/// What one sink holds at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkFound {
    pub name: String,
    /// At-least-once sinks take no part in checkpoints.
    pub exactly_once: bool,
    pub committed: Option<u64>,
    /// The checkpoint it pre-committed and kept without committing it.
    pub prepared: Option<u64>,
    /// Epochs with a write-ahead log file.
    pub wal_epochs: Vec<u64>,
}

/// What a sink does before the pipeline runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkAction {
    /// It holds the restored checkpoint (or it is at-least-once).
    UpToDate,
    /// Finish the commit of this checkpoint: commit the epoch the sink kept prepared,
    /// or write it from the write-ahead log and commit it (idempotent: the sink's
    /// commit carries the checkpoint id).
    Redo(u64),
    /// New to the pipeline, or back after missing checkpoints: it starts at the
    /// restored checkpoint, without what came before.
    StartsHere { had: Option<u64> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkPlan {
    pub action: SinkAction,
    /// Write-ahead log epochs to delete: committed already, or never complete.
    pub discard: Vec<u64>,
}

/// Where the restored state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// No checkpoint anywhere: sources start as configured.
    Beginning,
    /// The state store's last complete checkpoint.
    Log(u64),
    /// No pipeline log (a state directory made before it existed, or lost): the
    /// checkpoint every sink that has one agrees on, with the state it stored.
    Sink { id: u64, sink: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    pub restore: Restore,
    pub sinks: Vec<SinkPlan>,
    /// The id of the next checkpoint: the one after the restored one.
    pub next_id: u64,
}

/// Decides the recovery. `log`: the state store's last complete checkpoint.
pub fn plan(log: Option<u64>, sinks: &[SinkFound]) -> Result<RecoveryPlan, String> {
    let restore = match log {
        Some(c) => Restore::Log(c),
        None => from_sinks(sinks)?,
    };
    let c = match &restore {
        Restore::Beginning => None,
        Restore::Log(c) | Restore::Sink { id: c, .. } => Some(*c),
    };
    let mut plans = Vec::with_capacity(sinks.len());
    for s in sinks {
        if !s.exactly_once {
            plans.push(SinkPlan {
                action: SinkAction::UpToDate,
                discard: s.wal_epochs.clone(),
            });
            continue;
        }
        let action = match (c, s.committed) {
            (None, None) => SinkAction::UpToDate,
            (None, Some(_)) => unreachable_ahead(s, None)?,
            (Some(c), Some(k)) if k == c => SinkAction::UpToDate,
            (Some(c), Some(k)) if k > c => unreachable_ahead(s, Some(c))?,
            (Some(c), Some(k)) if k + 1 == c => SinkAction::Redo(c),
            // Present in the epoch of `c` (it logged it) but without the commit before:
            // the pipeline's first checkpoint, or a sink added in the run that made `c`.
            (Some(c), _) if s.wal_epochs.contains(&c) || s.prepared == Some(c) => {
                SinkAction::Redo(c)
            }
            (Some(_), had) => SinkAction::StartsHere { had },
        };
        let keep = match action {
            SinkAction::Redo(c) => Some(c),
            _ => None,
        };
        plans.push(SinkPlan {
            action,
            discard: s
                .wal_epochs
                .iter()
                .copied()
                .filter(|e| Some(*e) != keep)
                .collect(),
        });
    }
    Ok(RecoveryPlan {
        restore,
        sinks: plans,
        // Ids follow on without a gap, so that "one behind" (`k + 1 == c`) always
        // means "took part in `c` but had not committed it". The ids of epochs that
        // never completed are free again: their logs are discarded first.
        next_id: c.map_or(1, |c| c + 1),
    })
}

/// Checkpoint `given_up`, complete in the state store and committed by no sink, given
/// up: the pipeline restores `plan.restore` instead (see [`give_up_uncommitted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenUp {
    pub given_up: u64,
    pub plan: RecoveryPlan,
}

/// The plan that gives up the restored checkpoint instead of redoing it, where that is
/// the exact choice: for a pipeline whose sources resume each partition from the later
/// of their checkpoint and their consumer group's committed offset, whose exactly-once
/// sinks commit those offsets to the group in their transactions, and whose keyed
/// state is restored from changelogs those transactions carry (the caller knows
/// that). Then what a sink has committed is the whole truth of the group: after a crash
/// between the store's completion of *c* and the sinks' commit of it, another worker
/// may have taken the partitions over and done the epoch of *c* again, and a redo from
/// this worker's write-ahead log would write it twice. Giving *c* up restores the
/// sinks' checkpoint *c − 1* instead: each partition resumes where the group stands,
/// which is *c − 1* where nobody did the epoch's work since, so nothing is lost either.
///
/// `None` (redo as planned) unless every exactly-once sink is to redo *c* from its
/// write-ahead log and all of them stand at the same checkpoint before it.
pub fn give_up_uncommitted(plan: &RecoveryPlan, sinks: &[SinkFound]) -> Option<GivenUp> {
    let Restore::Log(c) = plan.restore else {
        return None;
    };
    let exactly_once: Vec<&SinkFound> = sinks.iter().filter(|s| s.exactly_once).collect();
    let redone = |(s, p): (&SinkFound, &SinkPlan)| {
        !s.exactly_once || (p.action == SinkAction::Redo(c) && s.prepared != Some(c))
    };
    let first = exactly_once.first()?;
    if !sinks.iter().zip(&plan.sinks).all(redone)
        || exactly_once.iter().any(|s| s.committed != first.committed)
        || first.committed.is_some_and(|k| k + 1 != c)
    {
        return None;
    }
    let restore = match first.committed {
        Some(id) => Restore::Sink {
            id,
            sink: first.name.clone(),
        },
        None => Restore::Beginning,
    };
    Some(GivenUp {
        given_up: c,
        plan: RecoveryPlan {
            restore,
            sinks: sinks
                .iter()
                .map(|s| SinkPlan {
                    action: SinkAction::UpToDate,
                    discard: s.wal_epochs.clone(),
                })
                .collect(),
            next_id: first.committed.map_or(1, |k| k + 1),
        },
    })
}

/// Without a pipeline log: the sinks' checkpoints must agree.
fn from_sinks(sinks: &[SinkFound]) -> Result<Restore, String> {
    let committed: Vec<(&str, u64)> = sinks
        .iter()
        .filter(|s| s.exactly_once)
        .filter_map(|s| s.committed.map(|k| (s.name.as_str(), k)))
        .collect();
    let Some(&(first, id)) = committed.first() else {
        return Ok(Restore::Beginning);
    };
    if committed.iter().all(|(_, k)| *k == id) {
        return Ok(Restore::Sink {
            id,
            sink: first.to_string(),
        });
    }
    let list: Vec<String> = committed
        .iter()
        .map(|(n, k)| format!("`{n}` at {k}"))
        .collect();
    Err(format!(
        "the pipeline's checkpoint log is missing and its sinks hold different checkpoints ({}): which one the pipeline stood at cannot be known. Restore the state directory, or reset the pipeline's offsets (DELETE /connectors/<name>/offsets) to start over",
        list.join(", ")
    ))
}

fn unreachable_ahead(s: &SinkFound, c: Option<u64>) -> Result<SinkAction, String> {
    Err(format!(
        "sink `{}` has committed checkpoint {}, after the pipeline's last complete checkpoint ({}): the state directory is older than the sink's destination (restored from a backup, or shared with another worker?). Restore the matching state directory, or reset the pipeline's offsets (DELETE /connectors/<name>/offsets) to start over",
        s.name,
        s.committed.unwrap_or(0),
        c.map_or("none".to_string(), |c| c.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sink(name: &str, committed: Option<u64>, wal: &[u64]) -> SinkFound {
        SinkFound {
            name: name.into(),
            exactly_once: true,
            committed,
            prepared: None,
            wal_epochs: wal.to_vec(),
        }
    }

    /// A sink that keeps its pre-committed epoch (no write-ahead log).
    fn file_sink(name: &str, committed: Option<u64>, prepared: Option<u64>) -> SinkFound {
        SinkFound {
            prepared,
            ..sink(name, committed, &[])
        }
    }

    fn actions(p: &RecoveryPlan) -> Vec<SinkAction> {
        p.sinks.iter().map(|s| s.action.clone()).collect()
    }

    #[test]
    fn a_fresh_pipeline_starts_from_the_beginning() {
        let p = plan(None, &[sink("a", None, &[]), sink("b", None, &[1])]).unwrap();
        assert_eq!(p.restore, Restore::Beginning);
        assert_eq!(actions(&p), [SinkAction::UpToDate, SinkAction::UpToDate]);
        assert_eq!(
            p.sinks[1].discard,
            [1],
            "a log of a checkpoint that never completed"
        );
        assert_eq!(p.next_id, 1);
    }

    #[test]
    fn a_crash_between_complete_and_commit_redoes_the_sinks_behind() {
        // Checkpoint 7 completed; `a` committed it, `b` crashed before its commit.
        let p = plan(
            Some(7),
            &[sink("a", Some(7), &[]), sink("b", Some(6), &[7])],
        )
        .unwrap();
        assert_eq!(p.restore, Restore::Log(7));
        assert_eq!(actions(&p), [SinkAction::UpToDate, SinkAction::Redo(7)]);
        assert!(p.sinks[1].discard.is_empty());
        assert_eq!(p.next_id, 8);
    }

    #[test]
    fn a_crash_before_complete_rolls_every_sink_back_to_the_log() {
        // Both prepared 8, the log never recorded it: 8 is given up everywhere.
        let p = plan(
            Some(7),
            &[sink("a", Some(7), &[8]), sink("b", Some(7), &[8])],
        )
        .unwrap();
        assert_eq!(actions(&p), [SinkAction::UpToDate, SinkAction::UpToDate]);
        assert_eq!(p.sinks[0].discard, [8]);
        assert_eq!(p.next_id, 8, "no gap: 8 is given up and made anew");
    }

    #[test]
    fn a_sink_that_kept_the_epoch_prepared_commits_it() {
        // Checkpoint 7 completed; `f` prepared it and crashed before its commit.
        let p = plan(Some(7), &[file_sink("f", Some(6), Some(7))]).unwrap();
        assert_eq!(actions(&p), [SinkAction::Redo(7)]);
        // Its very first checkpoint, prepared and complete, never committed.
        let p = plan(Some(1), &[file_sink("f", None, Some(1))]).unwrap();
        assert_eq!(actions(&p), [SinkAction::Redo(1)]);
        // Prepared 8, which never completed: the sink holds 7, the restored one
        // (the runtime gives the prepared epoch up).
        let p = plan(Some(7), &[file_sink("f", Some(7), Some(8))]).unwrap();
        assert_eq!(actions(&p), [SinkAction::UpToDate]);
        // A first checkpoint prepared but never complete: a fresh start.
        let p = plan(None, &[file_sink("f", None, Some(1))]).unwrap();
        assert_eq!(actions(&p), [SinkAction::UpToDate]);
        assert_eq!(p.restore, Restore::Beginning);
    }

    #[test]
    fn an_empty_epoch_redoes_as_a_commit_of_nothing() {
        let p = plan(Some(3), &[sink("a", Some(2), &[])]).unwrap();
        assert_eq!(actions(&p), [SinkAction::Redo(3)]);
    }

    #[test]
    fn the_first_checkpoint_is_redone_into_a_sink_that_never_committed() {
        let p = plan(Some(1), &[sink("a", None, &[1]), sink("b", Some(1), &[])]).unwrap();
        assert_eq!(actions(&p), [SinkAction::Redo(1), SinkAction::UpToDate]);
    }

    #[test]
    fn a_sink_that_logged_the_restored_checkpoint_redoes_it_whatever_it_committed() {
        let p = plan(Some(9), &[sink("a", Some(6), &[9])]).unwrap();
        assert_eq!(actions(&p), [SinkAction::Redo(9)]);
    }

    #[test]
    fn new_and_returning_sinks_start_at_the_restored_checkpoint() {
        let p = plan(
            Some(9),
            &[sink("new", None, &[]), sink("back", Some(4), &[5])],
        )
        .unwrap();
        assert_eq!(
            actions(&p),
            [
                SinkAction::StartsHere { had: None },
                SinkAction::StartsHere { had: Some(4) }
            ]
        );
        assert_eq!(p.sinks[1].discard, [5]);
    }

    #[test]
    fn a_sink_ahead_of_the_log_is_refused_with_the_fix() {
        let e = plan(Some(3), &[sink("db", Some(5), &[])]).unwrap_err();
        assert!(
            e.contains("`db`") && e.contains("checkpoint 5") && e.contains("offsets"),
            "{e}"
        );
    }

    #[test]
    fn without_a_log_the_sinks_must_agree() {
        let p = plan(
            None,
            &[
                sink("a", Some(4), &[]),
                sink("b", Some(4), &[]),
                sink("c", None, &[]),
            ],
        )
        .unwrap();
        assert_eq!(
            p.restore,
            Restore::Sink {
                id: 4,
                sink: "a".into()
            }
        );
        assert_eq!(
            actions(&p),
            [
                SinkAction::UpToDate,
                SinkAction::UpToDate,
                SinkAction::StartsHere { had: None }
            ]
        );
        let e = plan(None, &[sink("a", Some(4), &[]), sink("b", Some(3), &[])]).unwrap_err();
        assert!(e.contains("`a` at 4") && e.contains("`b` at 3"), "{e}");
    }

    #[test]
    fn an_uncommitted_checkpoint_is_given_up_for_the_sinks_one() {
        // Complete 7, both sinks at 6 with 7 in their logs: restore 6, make 7 anew.
        let found = [sink("a", Some(6), &[7]), sink("b", Some(6), &[7])];
        let g = give_up_uncommitted(&plan(Some(7), &found).unwrap(), &found).unwrap();
        assert_eq!(g.given_up, 7);
        assert_eq!(
            g.plan.restore,
            Restore::Sink {
                id: 6,
                sink: "a".into()
            }
        );
        assert_eq!(
            actions(&g.plan),
            [SinkAction::UpToDate, SinkAction::UpToDate]
        );
        assert_eq!(g.plan.sinks[1].discard, [7]);
        assert_eq!(g.plan.next_id, 7);
        // An empty epoch (no log) is given up the same way.
        let found = [sink("a", Some(2), &[])];
        let g = give_up_uncommitted(&plan(Some(3), &found).unwrap(), &found).unwrap();
        assert_eq!(g.plan.next_id, 3);
        // The very first checkpoint: back to the beginning.
        let found = [sink("a", None, &[1])];
        let g = give_up_uncommitted(&plan(Some(1), &found).unwrap(), &found).unwrap();
        assert_eq!(g.plan.restore, Restore::Beginning);
        assert_eq!(
            (g.plan.next_id, g.plan.sinks[0].discard.clone()),
            (1, vec![1])
        );
        // At-least-once sinks do not count.
        let mut out = sink("stdout", None, &[]);
        out.exactly_once = false;
        let found = [sink("a", Some(6), &[7]), out];
        assert!(give_up_uncommitted(&plan(Some(7), &found).unwrap(), &found).is_some());
    }

    #[test]
    fn a_checkpoint_some_sink_committed_or_kept_prepared_is_redone() {
        let cases: [&[SinkFound]; 5] = [
            // `a` committed 7: its output holds the epoch, `b` must get it too.
            &[sink("a", Some(7), &[]), sink("b", Some(6), &[7])],
            // Kept prepared in the sink: its commit is the only copy of the epoch.
            &[file_sink("f", Some(6), Some(7))],
            // Sinks behind by different amounts: no one checkpoint to go back to.
            &[sink("a", Some(6), &[7]), sink("b", None, &[7])],
            // Logged 7 but committed 4: its checkpoint is not the one before 7.
            &[sink("a", Some(4), &[7])],
            // Nothing to redo.
            &[sink("a", Some(7), &[])],
        ];
        for found in cases {
            let p = plan(Some(7), found).unwrap();
            assert_eq!(give_up_uncommitted(&p, found), None, "{found:?}");
        }
        let none: [SinkFound; 0] = [];
        assert_eq!(
            give_up_uncommitted(&plan(Some(7), &none).unwrap(), &none),
            None
        );
        let fresh = [sink("a", None, &[])];
        assert_eq!(
            give_up_uncommitted(&plan(None, &fresh).unwrap(), &fresh),
            None
        );
    }

    #[test]
    fn at_least_once_sinks_take_no_part() {
        let mut out = sink("stdout", None, &[]);
        out.exactly_once = false;
        let p = plan(Some(5), &[out]).unwrap();
        assert_eq!(actions(&p), [SinkAction::UpToDate]);
    }
}
