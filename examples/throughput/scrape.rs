//! A minimal keep-alive HTTP/1.1 client for `GET /metrics`, reading the
//! counters (l) needs: judged requests of each probe feature and the open
//! joins.

use std::io::{Read, Write};
use std::time::Duration;

/// One scrape: when its request was written and its response read
/// (nanoseconds after `t0`), and the probe features' judged requests.
pub struct Scrape {
    pub sent: u64,
    pub got: u64,
    pub counts: Vec<u64>,
}

pub struct Scraper {
    addr: std::net::SocketAddr,
    parts: usize,
    conn: Option<std::net::TcpStream>,
    buf: Vec<u8>,
}

impl Scraper {
    pub fn new(addr: std::net::SocketAddr, parts: usize) -> Self {
        Scraper { addr, parts, conn: None, buf: Vec::with_capacity(1 << 20) }
    }

    /// `accord_requests_total` of each probe feature, summed over path and
    /// verdict, and the body's length.
    pub fn scrape(&mut self) -> anyhow::Result<(Vec<u64>, usize)> {
        let (counts, _, len) = self.scrape_all()?;
        Ok((counts, len))
    }

    /// Also `accord_open_joins`.
    pub fn scrape_all(&mut self) -> anyhow::Result<(Vec<u64>, i64, usize)> {
        let body = match self.get() {
            Ok(b) => b,
            Err(_) => {
                // The server may have closed an idle keep-alive connection.
                self.conn = None;
                self.get()?
            }
        };
        let (counts, open) = probe_counts(std::str::from_utf8(&body)?, self.parts);
        Ok((counts, open, body.len()))
    }

    fn get(&mut self) -> anyhow::Result<Vec<u8>> {
        if self.conn.is_none() {
            let s = std::net::TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(s);
            self.buf.clear();
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: accord\r\n\r\n")?;
        let mut chunk = [0u8; 64 << 10];
        let (head_end, len) = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..i])?;
                anyhow::ensure!(
                    head.starts_with("HTTP/1.1 200"),
                    "GET /metrics: {}",
                    head.lines().next().unwrap_or("")
                );
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                    })
                    .ok_or_else(|| anyhow::anyhow!("GET /metrics: no content-length"))?;
                break (i + 4, len);
            }
            let n = conn.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "GET /metrics: connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        while self.buf.len() < head_end + len {
            let n = conn.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "GET /metrics: connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(body)
    }
}

/// Judged requests of each probe feature `latency.pN` (N below `parts`),
/// summed over path and verdict, and `accord_open_joins`.
fn probe_counts(text: &str, parts: usize) -> (Vec<u64>, i64) {
    let mut counts = vec![0u64; parts];
    let mut open = 0i64;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("accord_open_joins ") {
            open = v.trim().parse::<f64>().map_or(0, |v| v as i64);
            continue;
        }
        let Some(rest) = line.strip_prefix("accord_requests_total{") else { continue };
        let Some(i) = rest.find("feature=\"latency.p") else { continue };
        let after = &rest[i + "feature=\"latency.p".len()..];
        let Some(p) = after.split('"').next().and_then(|d| d.parse::<usize>().ok()) else { continue };
        let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if let Some(c) = counts.get_mut(p) {
            *c += v as u64;
        }
    }
    (counts, open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_probe_feature() {
        let text = "accord_open_joins 12\n\
            accord_requests_total{feature=\"latency.p0\",path=\"new\",verdict=\"agree\"} 3\n\
            accord_requests_total{feature=\"latency.p0\",path=\"old\",verdict=\"agree\"} 2\n\
            accord_requests_total{feature=\"latency.p1\",path=\"new\",verdict=\"diverge\"} 1\n\
            accord_requests_total{feature=\"latency.p9\",path=\"new\",verdict=\"agree\"} 7\n\
            accord_requests_total{feature=\"checkout_v2\",path=\"new\",verdict=\"agree\"} 100\n";
        assert_eq!(probe_counts(text, 2), (vec![5, 1], 12));
    }
}
