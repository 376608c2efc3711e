//! An `env` entry and its `valueFrom`, read exactly as k8s-openapi reads an `EnvVar` and an
//! `EnvVarSource` (the Kubernetes 1.33 types), but with their strings borrowed from the review
//! (see [`Text`]).
//!
//! k8s-openapi's types own every string. These views read the same JSON into the same values,
//! and refuse what those types refuse with the same words, so that no answer changes:
//! - only a JSON object is read (not an array, which serde's derived visitors would take as the
//!   fields in order);
//! - unknown keys are skipped, and a repeated key keeps its last value (`null` included);
//! - a required field that is missing or `null` is the empty string, as k8s-openapi's
//!   `unwrap_or_default` has it (an entry without a `name` has the empty name);
//! - a value of the wrong type is refused with the type's name as k8s-openapi writes it
//!   (`expected ConfigMapKeySelector`).
//!
//! `fileKeyRef` (Kubernetes 1.34) is not in the 1.33 types, so it is skipped like any unknown
//! key: such an entry reads as a source hostguard does not know, which is unresolved.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::Text;

/// Writes a view struct and its `Deserialize`: `$name` as k8s-openapi names the type, each
/// field with its JSON key, and whether a missing or null value is its default (`required`) or
/// None (`optional`).
macro_rules! k8s_view {
    (
        $(#[$meta:meta])*
        pub struct $view:ident<'a> as $k8s_name:literal {
            $(
                $(#[$field_meta:meta])*
                $field:ident: $kind:ident $ty:ty = $key:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $view<'a> {
            $(
                $(#[$field_meta])*
                pub $field: k8s_view!(@type $kind $ty),
            )*
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $view<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[allow(non_camel_case_types)]
                enum Field {
                    $($field,)*
                    Other,
                }
                impl<'de> Deserialize<'de> for Field {
                    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                        struct FieldVisitor;
                        impl Visitor<'_> for FieldVisitor {
                            type Value = Field;
                            fn expecting(
                                &self,
                                f: &mut std::fmt::Formatter<'_>,
                            ) -> std::fmt::Result {
                                f.write_str("field identifier")
                            }
                            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
                                Ok(match v {
                                    $($key => Field::$field,)*
                                    _ => Field::Other,
                                })
                            }
                        }
                        d.deserialize_identifier(FieldVisitor)
                    }
                }
                struct ViewVisitor;
                impl<'de> Visitor<'de> for ViewVisitor {
                    type Value = $view<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($k8s_name)
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$view<'de>, A::Error> {
                        // Typed by the struct they build: `'de` is the visitor's lifetime.
                        $(let mut $field = None;)*
                        while let Some(__key) = map.next_key::<Field>()? {
                            match __key {
                                $(Field::$field => $field = map.next_value()?,)*
                                Field::Other => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok($view {
                            $($field: k8s_view!(@value $kind $field),)*
                        })
                    }
                }
                d.deserialize_struct($k8s_name, &[$($key),*], ViewVisitor)
            }
        }
    };
    (@type required $ty:ty) => { $ty };
    (@type optional $ty:ty) => { Option<$ty> };
    (@value required $field:ident) => { $field.unwrap_or_default() };
    (@value optional $field:ident) => { $field };
}

k8s_view! {
    /// One `env` entry, with its rarely set `valueFrom` boxed: 56 bytes instead of some 390,
    /// which is what a container's list moves each time it grows.
    pub struct EnvVarView<'a> as "EnvVar" {
        name: required Text<'a> = "name",
        value: optional Text<'a> = "value",
        value_from: optional Box<ValueFromView<'a>> = "valueFrom",
    }
}

k8s_view! {
    /// `valueFrom`: where the value comes from. At most one is set in an object the API server
    /// admits; the kubelet reads them in this order.
    pub struct ValueFromView<'a> as "EnvVarSource" {
        config_map_key_ref: optional KeySelectorView<'a> = "configMapKeyRef",
        field_ref: optional FieldSelectorView<'a> = "fieldRef",
        resource_field_ref: optional ResourceSelectorView<'a> = "resourceFieldRef",
        secret_key_ref: optional SecretKeySelectorView<'a> = "secretKeyRef",
    }
}

k8s_view! {
    /// `configMapKeyRef`: a key of a ConfigMap in the Pod's namespace.
    pub struct KeySelectorView<'a> as "ConfigMapKeySelector" {
        key: required Text<'a> = "key",
        name: required Text<'a> = "name",
        optional: optional bool = "optional",
    }
}

k8s_view! {
    /// `secretKeyRef`: a key of a Secret (which hostguard never reads).
    pub struct SecretKeySelectorView<'a> as "SecretKeySelector" {
        key: required Text<'a> = "key",
        name: required Text<'a> = "name",
        optional: optional bool = "optional",
    }
}

k8s_view! {
    /// `fieldRef`: a field of the Pod (Downward API).
    pub struct FieldSelectorView<'a> as "ObjectFieldSelector" {
        api_version: optional Text<'a> = "apiVersion",
        field_path: required Text<'a> = "fieldPath",
    }
}

k8s_view! {
    /// `resourceFieldRef`: a container's resource limit or request (Downward API).
    pub struct ResourceSelectorView<'a> as "ResourceFieldSelector" {
        container_name: optional Text<'a> = "containerName",
        /// k8s-openapi's own type: it reads numbers as well as strings.
        divisor: optional Quantity = "divisor",
        resource: required Text<'a> = "resource",
    }
}
