//! The source's side of the hand-over from the consumer thread, without a broker: the
//! thread's channel is fed by the test.

use std::ops::Range;

use connectd_sdk::{Record, Value};

use super::*;

fn source() -> (KafkaSource, tokio::sync::mpsc::Sender<Fetched>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(8);
    let mut source = KafkaSource::new(
        Default::default(),
        vec!["t".into()],
        ValueFormat::Json(None),
        None,
        None,
        "p".into(),
        "in".into(),
    );
    source.shared = Some(Arc::new(source.new_shared(Positions::new())));
    source.fetched = Some(receiver);
    (source, sender)
}

fn messages(partition: &Arc<Partition>, offsets: Range<i64>) -> Vec<FetchedMessage> {
    offsets
        .map(|offset| FetchedMessage {
            partition: partition.clone(),
            offset,
            record: Ok(Record::new(Value::from(offset))),
        })
        .collect()
}

fn position(source: &KafkaSource, partition: i32) -> Option<i64> {
    let shared = source.shared.as_ref().expect("open");
    shared
        .positions()
        .get(&("t".to_string(), partition))
        .copied()
}

/// A batch larger than a poll is returned over several polls, positions advancing only
/// with what was returned; a revoke that came after it is answered only once all of it
/// is out, with the positions after its last message.
#[tokio::test]
async fn a_revoke_is_answered_after_every_message_received_before_it() {
    let (mut source, sender) = source();
    let p0 = Arc::new(("t".to_string(), 0));
    let p1 = Arc::new(("t".to_string(), 1));
    let mut batch = messages(&p0, 0..300);
    batch.extend(messages(&p1, 0..300));
    sender.send(Fetched::Messages(batch)).await.unwrap();
    let (done, answer) = std::sync::mpsc::channel();
    sender
        .send(Fetched::Revoke {
            partitions: vec![(*p0).clone()],
            done,
        })
        .await
        .unwrap();

    let mut bad = Vec::new();
    let SourcePoll::Batch(first) = source.poll(128, &mut bad).await.unwrap() else {
        panic!("a batch first");
    };
    assert_eq!(first.len(), 128);
    assert_eq!(position(&source, 0), Some(128), "only what was returned");
    assert_eq!(position(&source, 1), None);

    let mut got = first;
    loop {
        match source.poll(128, &mut bad).await.unwrap() {
            SourcePoll::Batch(records) => {
                assert!(records.len() <= 128);
                assert!(
                    answer.try_recv().is_err(),
                    "the revoke was answered with messages still to return"
                );
                got.extend(records);
            }
            SourcePoll::Idle(_) => break,
            SourcePoll::End => panic!("a kafka source does not end"),
        }
    }
    assert!(bad.is_empty());
    let values: Vec<i64> = got
        .iter()
        .filter_map(|r| match r.value {
            Value::Int(i) => Some(i),
            _ => None,
        })
        .collect();
    let expected: Vec<i64> = (0..300).chain(0..300).collect();
    assert_eq!(values, expected, "every message once, in order");
    let reached = answer.try_recv().expect("the revoke is answered");
    assert_eq!(reached, [(("t".to_string(), 0), 300)].into());
    assert_eq!(position(&source, 0), None, "given up with its partition");
    assert_eq!(position(&source, 1), Some(300));
}

/// An error that came after messages is reported once they are all returned.
#[tokio::test]
async fn an_error_after_messages_comes_after_them() {
    let (mut source, sender) = source();
    let p0 = Arc::new(("t".to_string(), 0));
    sender
        .send(Fetched::Messages(messages(&p0, 0..200)))
        .await
        .unwrap();
    sender
        .send(Fetched::Error(KafkaError::Canceled))
        .await
        .unwrap();
    let mut bad = Vec::new();
    let mut returned = 0;
    let error = loop {
        match source.poll(128, &mut bad).await {
            Ok(SourcePoll::Batch(records)) => returned += records.len(),
            Ok(other) => panic!("expected records or the error, got {other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(returned, 200);
    assert!(error.to_string().contains("consume"), "{error}");
    assert_eq!(position(&source, 0), Some(200));
}
