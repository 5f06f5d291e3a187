//! The HTTP client of the commands that talk to a running worker (`status`, `tap`,
//! `top`): its base URL and, for HTTPS, the CA certificates to trust.

/// The API's base URL: `addr` as given when it has a scheme, else `http://addr`.
pub fn base_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{addr}")
    }
}

/// A client trusting `ca_pem`'s certificates besides the system's.
pub fn client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("--ca-cert: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("--ca-cert: no certificate in the file".into());
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot make the HTTP client: {e}"))
}

/// An error with its causes (reqwest's own text leaves out why a TLS handshake failed).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// GETs `path`; the answer's body, or an error that says what went wrong and where.
pub async fn get_text(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> Result<String, String> {
    let url = format!("{base}{path}");
    let mut request = client.get(&url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach the admin API at {url}: {}", chain(&e)))?;
    let code = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    if !code.is_success() {
        return Err(format!("{url} answered {code}: {body}"));
    }
    Ok(body)
}

/// GETs `path` as JSON.
pub async fn get_json(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> Result<serde_json::Value, String> {
    let body = get_text(client, base, path, token).await?;
    serde_json::from_str(&body)
        .map_err(|e| format!("{base}{path} did not answer JSON ({e}): {body}"))
}
