//! A network endpoint as an operator writes it: `HOST:PORT` or `[V6]:PORT`, checked once
//! where it is read, resolved anew whenever it is dialled (DNS names may move).

/// Splits `HOST:PORT` (or `[V6]:PORT`) and checks both parts.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| "expected [IPV6]:PORT".to_string())?;
        (host, port)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| "expected HOST:PORT".to_string())?
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(format!("invalid host `{host}`"));
    }
    let port: u16 = port.parse().map_err(|_| format!("invalid port `{port}`"))?;
    if port == 0 {
        return Err("port 0 is not a valid address".to_string());
    }
    Ok((host.to_string(), port))
}
