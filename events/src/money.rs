//! Money and the small value types events carry, valid by construction.
//! Money is integer minor units plus an ISO 4217 code: never floats.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::error::ValueError;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");
    pub const GBP: Currency = Currency(*b"GBP");

    /// Parses a code such as `"EUR"`.
    ///
    /// ```
    /// assert!(events::Currency::parse("EUR").is_ok());
    /// assert!(events::Currency::parse("eur").is_err());
    /// ```
    pub fn parse(code: &str) -> Result<Self, ValueError> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(ValueError::Currency(code.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl JsonSchema for Currency {
    fn schema_name() -> Cow<'static, str> {
        "Currency".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 currency code"
        })
    }
}

/// An amount of money in integer minor units (cents) of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in minor units of `currency` (e.g. cents); negative only for credits.
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Money {
            amount_minor,
            currency,
        }
    }

    /// Adds two amounts of the same currency; `None` on a currency mismatch or overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Some(Money::new(
            self.amount_minor.checked_add(other.amount_minor)?,
            self.currency,
        ))
    }

    /// Multiplies by a quantity; `None` on overflow.
    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        Some(Money::new(
            self.amount_minor.checked_mul(i64::from(quantity))?,
            self.currency,
        ))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        write!(f, "{sign}{}.{:02} {}", abs / 100, abs % 100, self.currency)
    }
}

/// Defines a validated string newtype with a JSON Schema pattern.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $pattern:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, ValueError> {
                let s = s.into();
                let check: fn(&str) -> bool = $check;
                if check(&s) { Ok($name(s)) } else { Err(ValueError::$variant(s)) }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern })
            }
        }
    };
}

string_newtype!(
    /// A stock-keeping unit: 3 to 64 of `A-Z 0-9 - _ .`, upper case.
    Sku,
    Sku,
    "^[A-Z0-9][A-Z0-9._-]{2,63}$",
    |s| {
        (3..=64).contains(&s.len())
            && s.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_uppercase()
                    || b.is_ascii_digit()
                    || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
            })
    }
);

string_newtype!(
    /// An ISO 3166-1 alpha-2 country code such as `DE`.
    Country,
    Country,
    "^[A-Z]{2}$",
    |s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
);

/// A positive item quantity (never zero, never negative).
pub type Quantity = std::num::NonZeroU32;

/// Defines a bounded integer newtype.
macro_rules! bounded_u8 {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $min:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "u8", into = "u8")]
        pub struct $name(u8);

        impl $name {
            pub fn new(v: u8) -> Result<Self, ValueError> {
                if ($min..=$max).contains(&v) { Ok($name(v)) } else { Err(ValueError::$variant(v)) }
            }
            pub fn get(self) -> u8 {
                self.0
            }
        }

        impl TryFrom<u8> for $name {
            type Error = ValueError;
            fn try_from(v: u8) -> Result<Self, Self::Error> {
                $name::new(v)
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "integer", "format": "uint8", "minimum": $min, "maximum": $max })
            }
        }
    };
}

bounded_u8!(
    /// A review rating from 1 to 5 stars.
    Rating,
    Rating,
    1,
    5
);
bounded_u8!(
    /// A fraud score from 0 (clean) to 99 (certain fraud).
    FraudScore,
    FraudScore,
    0,
    99
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_rejects_bad_codes() {
        for bad in ["", "EU", "EURO", "eur", "E1R", "€€€"] {
            assert!(Currency::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Currency::parse("JPY").unwrap().as_str(), "JPY");
    }

    #[test]
    fn money_arithmetic_refuses_mixed_currencies_and_overflow() {
        let a = Money::new(150, Currency::EUR);
        assert_eq!(
            a.checked_add(Money::new(50, Currency::EUR)),
            Some(Money::new(200, Currency::EUR))
        );
        assert_eq!(a.checked_add(Money::new(50, Currency::USD)), None);
        assert_eq!(Money::new(i64::MAX, Currency::EUR).checked_mul(2), None);
        assert_eq!(a.to_string(), "1.50 EUR");
        assert_eq!(Money::new(-5, Currency::USD).to_string(), "-0.05 USD");
    }

    #[test]
    fn bounded_values_reject_out_of_range() {
        assert!(Rating::new(0).is_err());
        assert!(Rating::new(6).is_err());
        assert!(FraudScore::new(100).is_err());
        assert!(serde_json::from_str::<Rating>("9").is_err());
        assert!(serde_json::from_str::<Sku>("\"ab\"").is_err());
        assert!(serde_json::from_str::<Sku>("\"SKU-001.RED\"").is_ok());
        assert!(serde_json::from_str::<Country>("\"de\"").is_err());
    }
}

/// OpenAPI schemas of the validated string and number types (the same rules as their
/// JSON Schemas above).
#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    macro_rules! openapi_string {
        ($($name:ident => $pattern:literal),+) => {$(
            impl utoipa::PartialSchema for super::$name {
                fn schema() -> RefOr<Schema> {
                    ObjectBuilder::new().schema_type(Type::String).pattern(Some($pattern)).into()
                }
            }
            impl utoipa::ToSchema for super::$name {}
        )+};
    }
    openapi_string!(Currency => "^[A-Z]{3}$", Sku => "^[A-Z0-9][A-Z0-9._-]{2,63}$", Country => "^[A-Z]{2}$");

    macro_rules! openapi_int {
        ($($name:ident => $min:literal..$max:literal),+) => {$(
            impl utoipa::PartialSchema for super::$name {
                fn schema() -> RefOr<Schema> {
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some($min))
                        .maximum(Some($max))
                        .into()
                }
            }
            impl utoipa::ToSchema for super::$name {}
        )+};
    }
    openapi_int!(Rating => 1..5, FraudScore => 0..99);
}
