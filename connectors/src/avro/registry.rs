//! A Confluent Schema Registry client (REST API v1): register a schema under a subject,
//! look one up by id, read a subject's latest version. Answers are cached: a schema id
//! never changes meaning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or did not answer in time: worth retrying.
    #[error("schema registry {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The registry answered, and the answer is final (unknown id, incompatible schema,
    /// not a registry).
    #[error("schema registry {url}: {message}")]
    Refused { url: String, message: String },
}

impl RegistryError {
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Unreachable { .. })
    }
}

#[derive(Debug)]
pub struct Registry {
    base: String,
    http: reqwest::Client,
    by_id: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl Registry {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Registry {
            base: base.trim_end_matches('/').to_string(),
            http,
            by_id: Mutex::default(),
        }
    }

    fn unreachable(&self, url: &str, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        }
    }

    fn refused(&self, url: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Refused {
            url: url.to_string(),
            message: message.into(),
        }
    }

    /// Sends a request and returns the JSON answer; a non-2xx status becomes an error
    /// carrying the registry's own message.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<serde_json::Value, RegistryError> {
        let response = request
            .header("Accept", CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| self.unreachable(url, e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.unreachable(url, e))?;
        let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        if status.is_server_error() {
            return Err(self.unreachable(url, format!("HTTP {status}: {body}")));
        }
        if !status.is_success() {
            let message = json
                .as_ref()
                .and_then(|j| j["message"].as_str())
                .map_or_else(|| body.clone(), str::to_string);
            return Err(self.refused(url, format!("HTTP {status}: {message}")));
        }
        json.ok_or_else(|| self.refused(url, format!("the answer is not JSON: {body}")))
    }

    fn schema_of(&self, url: &str, answer: &serde_json::Value) -> Result<Schema, RegistryError> {
        let text = answer["schema"]
            .as_str()
            .ok_or_else(|| self.refused(url, format!("no `schema` in the answer: {answer}")))?;
        super::parse_schema(text).map_err(|e| self.refused(url, e))
    }

    fn id_of(&self, url: &str, answer: &serde_json::Value) -> Result<u32, RegistryError> {
        answer["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.refused(url, format!("no schema `id` in the answer: {answer}")))
    }

    /// Registers a schema (as written: `text`, parsed: `schema`) under `subject` (a
    /// no-op when it is there already) and returns its id.
    pub async fn register(
        &self,
        subject: &str,
        text: &str,
        schema: &Schema,
    ) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let body = serde_json::json!({"schema": text}).to_string();
        let answer = self
            .call(
                self.http
                    .post(&url)
                    .header("Content-Type", CONTENT_TYPE)
                    .body(body),
                &url,
            )
            .await?;
        let id = self.id_of(&url, &answer)?;
        self.cache(id, Arc::new(schema.clone()));
        Ok(id)
    }

    /// The latest schema registered under `subject`, with its id.
    pub async fn latest(&self, subject: &str) -> Result<(u32, Arc<Schema>), RegistryError> {
        let url = format!("{}/subjects/{subject}/versions/latest", self.base);
        let answer = self.call(self.http.get(&url), &url).await?;
        let id = self.id_of(&url, &answer)?;
        let schema = Arc::new(self.schema_of(&url, &answer)?);
        self.cache(id, schema.clone());
        Ok((id, schema))
    }

    /// The schema with this id (from the cache when seen before).
    pub async fn by_id(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.cached(id) {
            return Ok(s);
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let answer = self.call(self.http.get(&url), &url).await?;
        let schema = Arc::new(self.schema_of(&url, &answer)?);
        self.cache(id, schema.clone());
        Ok(schema)
    }

    pub fn cached(&self, id: u32) -> Option<Arc<Schema>> {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn cache(&self, id: u32, schema: Arc<Schema>) {
        self.by_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema);
    }
}
