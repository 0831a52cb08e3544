//! The transaction event as it arrives on Kafka (contract §1). Field names and types follow
//! `transaction.schema.json`; range and format rules are checked by the worker's validator.

pub use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// Largest record value the contract accepts, in bytes.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Upper bound on `amount` (inclusive), in major units.
pub const MAX_AMOUNT: f64 = 1_000_000.0;

/// One e-commerce payment event. Unknown JSON fields are ignored and never stored. Text
/// fields are [`CompactString`]s: most (ids, codes, short names) fit in the 24 bytes of the
/// value itself, so decoding an event allocates for its long fields only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: CompactString,
    pub customer_id: CompactString,
    pub merchant_id: CompactString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_category: Option<CompactString>,
    pub amount: f64,
    pub currency: CompactString,
    /// RFC 3339 event time with offset, kept as text until validated.
    pub timestamp: CompactString,
    pub payment_method: PaymentMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    pub country: CompactString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_country: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_last4: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_fingerprint: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<CompactString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_age_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    CreditCard,
    DebitCard,
    Paypal,
    ApplePay,
    GooglePay,
    BankTransfer,
    Crypto,
}

impl PaymentMethod {
    pub const ALL: [PaymentMethod; 7] = [
        Self::CreditCard,
        Self::DebitCard,
        Self::Paypal,
        Self::ApplePay,
        Self::GooglePay,
        Self::BankTransfer,
        Self::Crypto,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreditCard => "credit_card",
            Self::DebitCard => "debit_card",
            Self::Paypal => "paypal",
            Self::ApplePay => "apple_pay",
            Self::GooglePay => "google_pay",
            Self::BankTransfer => "bank_transfer",
            Self::Crypto => "crypto",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Mobile,
    Pos,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Mobile => "mobile",
            Self::Pos => "pos",
        }
    }
}

/// ISO 4217 active codes. A currency outside this list is `unknown_currency`.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL",
];

/// Whether `code` is a known ISO 4217 currency.
pub fn is_known_currency(code: &str) -> bool {
    CURRENCIES.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_table_is_sorted_for_binary_search() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert!(is_known_currency("EUR"));
        assert!(!is_known_currency("XYZ"));
    }
}
