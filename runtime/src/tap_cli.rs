//! `connectd tap <pipeline>/<component>`: prints the records leaving a component of a
//! running worker (a sink: reaching it), one JSON line each, as they pass.

use std::io::Write;

use crate::admin_client::{base_url, chain, client};

/// What to tap and how much of it.
#[derive(Debug)]
pub struct TapRequest<'a> {
    pub addr: &'a str,
    pub token: Option<&'a str>,
    pub ca_pem: Option<&'a [u8]>,
    /// `pipeline/component`.
    pub target: &'a str,
    /// Records to print before ending; 0: until interrupted.
    pub limit: u64,
    /// The share of records to print (0 < sample ≤ 1).
    pub sample: f64,
}

pub async fn run(req: &TapRequest<'_>, out: &mut impl Write) -> Result<(), String> {
    let (pipeline, component) = req
        .target
        .split_once('/')
        .filter(|(p, c)| !p.is_empty() && !c.is_empty())
        .ok_or_else(|| format!("`{}`: expected <pipeline>/<component>", req.target))?;
    let client = client(req.ca_pem)?;
    let url = format!(
        "{}/connectors/{pipeline}/tap/{component}?limit={}&sample={}",
        base_url(req.addr),
        req.limit,
        req.sample
    );
    let mut request = client.get(&url);
    if let Some(t) = req.token {
        request = request.bearer_auth(t);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the admin API at {url}: {}", chain(&e)))?;
    if !response.status().is_success() {
        let code = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url} answered {code}: {body}"));
    }
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{url}: the stream broke: {}", chain(&e)))?
    {
        out.write_all(&chunk)
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(())
}
