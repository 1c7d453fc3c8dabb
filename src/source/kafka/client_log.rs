//! librdkafka's log lines and client errors, as accord reports them: one
//! forwarder for every client's log callback, and the classification of
//! TLS and authentication failures (the `/readyz` reason).

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::types::RDKafkaErrorCode;

/// librdkafka's log lines, as rust-rdkafka's default context writes them,
/// except its line for each refused certificate or login: that failure is
/// also an error event, which gives the one clear (rate-limited) line and the
/// readyz reason, so the per-attempt line goes to debug.
pub fn forward_log(level: RDKafkaLogLevel, fac: &str, msg: &str) {
    if security_problem(None, msg).is_some() {
        tracing::debug!(target: "librdkafka", "librdkafka: {fac} {msg}");
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {msg}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", "librdkafka: {fac} {msg}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {msg}"),
    }
}

/// The readyz reason for a client error that is a security problem (failed
/// authentication, a failed TLS handshake), as librdkafka reports them.
pub fn security_problem(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<String> {
    match code {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(format!("kafka authentication failed: {reason}"))
        }
        Some(RDKafkaErrorCode::SSL) => Some(format!("kafka TLS failed: {reason}")),
        // A TLS alert from the broker (or its TLS terminator): "tlsv13 alert
        // certificate required" when it wants a client certificate, "alert
        // unknown ca" / "bad certificate" when it rejects the one given.
        _ if reason.contains("SSL handshake failed")
            || reason.contains("certificate verify failed")
            || (reason.contains("SSL") && reason.contains(" alert ")) =>
        {
            Some(format!("kafka TLS failed: {reason}"))
        }
        _ if reason.contains("SASL") && reason.contains("authentication failed") => {
            Some(format!("kafka authentication failed: {reason}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_certificates_and_logins_are_named() {
        let no_cert = "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 alert certificate required: SSL alert number 116";
        assert!(security_problem(Some(RDKafkaErrorCode::BrokerTransportFailure), no_cert)
            .is_some_and(|p| p.starts_with("kafka TLS failed: ")));
        let wrong_ca =
            "ssl://h:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        assert!(security_problem(None, wrong_ca).is_some_and(|p| p.starts_with("kafka TLS failed: ")));
        let scram = "SASL authentication error: SASL SCRAM authentication failed: broker responded with unknown-user";
        assert!(security_problem(Some(RDKafkaErrorCode::Authentication), scram)
            .is_some_and(|p| p.starts_with("kafka authentication failed: ")));
        assert!(security_problem(None, "sasl_plaintext://h:1/bootstrap: SASL authentication failed: x").is_some());
        let down = "ssl://h:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused";
        assert_eq!(security_problem(Some(RDKafkaErrorCode::BrokerTransportFailure), down), None);
        assert_eq!(security_problem(Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down"), None);
    }
}
