//! Telling a broker's refusal of a client's credentials or certificate from other Kafka
//! errors, by librdkafka's words. The worker logs it; the operator turns it into a Degraded
//! reason. Both also match librdkafka's error codes; these words are for the refusals that
//! arrive as plain transport failures.

/// Why a broker refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaRefusal {
    /// Wrong SASL user or password, or a mechanism the listener does not offer.
    Authentication,
    /// The TLS handshake failed: an untrusted server or client certificate.
    Tls,
}

/// The refusal `reason` (librdkafka's error text) describes, if any.
pub fn kafka_refusal(reason: &str) -> Option<KafkaRefusal> {
    if reason.contains("SASL authentication error") {
        return Some(KafkaRefusal::Authentication);
    }
    // A client certificate the broker refuses shows as a transport failure with OpenSSL's
    // words for its alert ("…SSL routines::sslv3 alert bad certificate: SSL alert…").
    ["SSL handshake failed", "SSL routines", "SSL alert"]
        .iter()
        .any(|words| reason.contains(words))
        .then_some(KafkaRefusal::Tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_by_their_words() {
        assert_eq!(
            kafka_refusal(
                "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
            ),
            Some(KafkaRefusal::Authentication)
        );
        assert_eq!(
            kafka_refusal(
                "ssl://k:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
            ),
            Some(KafkaRefusal::Tls)
        );
        assert_eq!(
            kafka_refusal(
                "ssl://k:9093/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42"
            ),
            Some(KafkaRefusal::Tls)
        );
        assert_eq!(
            kafka_refusal(
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused"
            ),
            None
        );
    }
}
