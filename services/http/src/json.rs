//! `Json<T>`: the JSON body extractor every service uses instead of `web::Json`.
//!
//! Same limits and error handling as `web::Json` (it delegates, so `JsonConfig` applies), with
//! one difference: the body must be a JSON object. serde's derived structs also accept arrays
//! (`[null, null]` fills fields by position), which would let schema-violating bodies through.

use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A JSON object body deserialized into `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Deserializes `T` only from a map.
#[derive(Debug)]
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Parses a JSON object body already read as bytes, with the same errors as [`Json`]
/// (`invalid_json` for syntax, `invalid_request` for a schema mismatch or a non-object).
pub fn from_object_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, crate::ProblemError> {
    use serde_json::error::Category;
    serde_json::from_slice::<ObjectOnly<T>>(bytes).map(|o| o.0).map_err(|e| {
        let code = match e.classify() {
            Category::Data => helix_core::ErrorCode::InvalidRequest,
            _ => helix_core::ErrorCode::InvalidJson,
        };
        crate::ProblemError::new(code, e.to_string())
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let fut = web::Json::<ObjectOnly<T>>::from_request(req, payload);
        Box::pin(async move { fut.await.map(|j| Json(j.into_inner().0)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        a: Option<u8>,
    }

    #[test]
    fn only_objects() {
        let ok: ObjectOnly<Body> = serde_json::from_str(r#"{"a": 1}"#).expect("object");
        assert_eq!(ok.0.a, Some(1));
        let err = serde_json::from_str::<ObjectOnly<Body>>("[null]").expect_err("array");
        assert!(err.to_string().contains("a JSON object"), "{err}");
        assert!(serde_json::from_str::<ObjectOnly<Body>>(r#"{"b": 1}"#).is_err());
    }
}
