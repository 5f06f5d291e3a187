//! Reading MongoDB back in tests (the emulator from scripts/mongo-emulator.sh, or
//! MONGODB_URL).

use std::collections::BTreeMap;

pub fn url() -> String {
    std::env::var("MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into())
}

/// Every document of a collection, as (relaxed extended) JSON.
pub fn documents(database: &str, name: &str) -> Vec<serde_json::Value> {
    use futures_util::TryStreamExt;
    super::mysql::rt().block_on(async {
        let client = mongodb::Client::with_uri_str(url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach MongoDB at {} (scripts/mongo-emulator.sh start): {e}",
                    url()
                )
            });
        let docs: Vec<mongodb::bson::Document> = client
            .database(database)
            .collection(name)
            .find(mongodb::bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        docs.into_iter()
            .map(|d| mongodb::bson::Bson::Document(d).into_relaxed_extjson())
            .collect()
    })
}

/// The documents of a collection by their (text) `_id`.
pub fn collection(database: &str, name: &str) -> BTreeMap<String, serde_json::Value> {
    documents(database, name)
        .into_iter()
        .map(|d| (d["_id"].as_str().unwrap_or_default().to_string(), d))
        .collect()
}
