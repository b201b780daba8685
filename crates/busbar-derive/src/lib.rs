//! Derive macros for busbar: [`TypeUuid`](derive@TypeUuid) and
//! [`MessageBox`](derive@MessageBox).
//!
//! Use them through the `busbar` crate (`#[derive(busbar::TypeUuid)]`,
//! `#[derive(busbar::MessageBox)]`); the generated code names `::busbar`.
//! The examples below are compiled and run as part of `busbar`'s own tests
//! (module `busbar::payload`), which this crate cannot depend on.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Expr, ExprLit, Fields, Lit, Meta};

/// Derives `busbar::TypeUuid` from a `#[uuid = "..."]` attribute.
///
/// The UUID is parsed at compile time: 32 hexadecimal digits, either in the
/// hyphenated form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` or without hyphens,
/// in either case. The nil UUID is refused. Pick a fresh random UUID per type
/// (`python3 -c 'import uuid;print(uuid.uuid4())'`) and never change it once
/// peers use it. Works on structs, enums and unions without generic
/// parameters.
///
/// ```ignore
/// use serde::{Deserialize, Serialize};
/// use busbar::TypeUuid;
///
/// #[derive(Serialize, Deserialize, busbar::TypeUuid)]
/// #[uuid = "0e8d7c3a-5b1f-4a52-9d3e-6f1a2b3c4d5e"]
/// struct Ping {
///     seq: u64,
/// }
///
/// assert_eq!(Ping::TYPE_UUID[0], 0x0e);
/// // Ping is now a `busbar::MessageBox` too, through the blanket impl.
/// ```
///
/// It expands to
///
/// ```ignore
/// impl ::busbar::TypeUuid for Ping {
///     const TYPE_UUID: ::busbar::TypeUuidBytes = [0x0e, 0x8d, /* ... */ 0x5e];
/// }
/// ```
#[proc_macro_derive(TypeUuid, attributes(uuid))]
pub fn derive_type_uuid(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    type_uuid_impl(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `busbar::MessageBox` for an enum whose variants each wrap one payload type.
///
/// Every variant must be a single-field tuple variant `Variant(T)` with
/// `T: busbar::MessageBox`: usually a type with `busbar::TypeUuid` and serde
/// (the built-in types, `busbar::BytesMessage`, your `#[derive(TypeUuid)]`
/// types), or another `#[derive(MessageBox)]` enum, so boxes nest.
///
/// * `type_uuid()` is the inner value's type id, and `encode_into` writes the
///   inner value's bytes: an enum adds nothing on the wire, so a peer that
///   receives the plain type (or a different enum holding it) decodes it.
/// * `decode(id, bytes)` asks each variant's type in declaration order and
///   returns the first that knows `id`; if none does it returns `Ok(None)`
///   and the receiver skips the message. Decoding errors of the type that
///   knows `id` are returned as they are.
/// * `From<T> for Enum` is generated for every variant whose type no other
///   variant names. Put `#[message_box(no_from)]` on the enum to generate no
///   `From` impls at all (for instance when two variants name one type
///   through different aliases).
///
/// ```ignore
/// use busbar::{BytesMessage, MessageBox};
///
/// #[derive(Debug, PartialEq, busbar::MessageBox)]
/// enum Msg {
///     Text(String),
///     Bytes(BytesMessage),
/// }
///
/// #[derive(Debug, PartialEq, busbar::MessageBox)]
/// enum Wider {
///     Msg(Msg),
///     Count(u64),
/// }
///
/// let m = Wider::from(Msg::from("hi".to_string()));
/// let mut wire = Vec::new();
/// m.encode_into(&mut wire)?;
/// assert_eq!(Wider::decode(m.type_uuid(), &wire)?, Some(m));
/// // `Msg` knows no `u64`: a `Count` sent to it is skipped.
/// assert_eq!(Msg::decode(<u64 as busbar::TypeUuid>::TYPE_UUID, &[1])?, None);
/// # Ok::<(), busbar::CodecError>(())
/// ```
#[proc_macro_derive(MessageBox, attributes(message_box))]
pub fn derive_message_box(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    message_box_impl(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn reject_generics(input: &DeriveInput, derive: &str) -> syn::Result<()> {
    if input.generics.params.is_empty() && input.generics.where_clause.is_none() {
        return Ok(());
    }
    let span = if input.generics.params.is_empty() {
        input.generics.where_clause.span()
    } else {
        input.generics.params.span()
    };
    Err(syn::Error::new(
        span,
        format!(
            "#[derive({derive})] does not support generic types: \
             a type id names one concrete type; wrap each instantiation in its own type"
        ),
    ))
}

const UUID_FORM: &str = "#[uuid = \"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\"]";

fn type_uuid_impl(input: &DeriveInput) -> syn::Result<TokenStream2> {
    reject_generics(input, "TypeUuid")?;
    let mut found: Option<([u8; 16], Span)> = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("uuid")) {
        if found.is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "duplicate #[uuid] attribute: a type has exactly one id",
            ));
        }
        let lit = match &attr.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => s,
                other => {
                    return Err(syn::Error::new_spanned(
                        other,
                        format!("the uuid must be a string literal: {UUID_FORM}"),
                    ))
                }
            },
            _ => {
                return Err(syn::Error::new_spanned(
                    attr,
                    format!("expected {UUID_FORM}"),
                ))
            }
        };
        let bytes = parse_uuid(&lit.value()).map_err(|why| {
            syn::Error::new_spanned(lit, format!("malformed uuid: {why}; expected {UUID_FORM}"))
        })?;
        found = Some((bytes, attr.span()));
    }
    let Some((bytes, span)) = found else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            format!(
                "#[derive(TypeUuid)] needs a {UUID_FORM} attribute on `{}` \
                 (generate one with `python3 -c 'import uuid;print(uuid.uuid4())'`)",
                input.ident
            ),
        ));
    };
    let ident = &input.ident;
    Ok(quote_spanned! {span=>
        impl ::busbar::TypeUuid for #ident {
            const TYPE_UUID: ::busbar::TypeUuidBytes = [#(#bytes),*];
        }
    })
}

/// Parses a UUID written as 32 hex digits, hyphenated 8-4-4-4-12 or plain.
fn parse_uuid(text: &str) -> Result<[u8; 16], String> {
    let digits: Vec<char> = if text.len() == 36 {
        for (i, c) in text.char_indices() {
            let hyphen_here = matches!(i, 8 | 13 | 18 | 23);
            if hyphen_here != (c == '-') {
                return Err(if hyphen_here {
                    format!("expected '-' at position {i}, found {c:?}")
                } else {
                    format!("unexpected '-' at position {i}")
                });
            }
        }
        text.chars().filter(|&c| c != '-').collect()
    } else if text.len() == 32 {
        text.chars().collect()
    } else {
        return Err(format!(
            "expected 36 characters (hyphenated) or 32 hex digits, found {} characters",
            text.chars().count()
        ));
    };
    if digits.len() != 32 {
        return Err("expected 32 hexadecimal digits".into());
    }
    let mut out = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        let mut byte = 0u8;
        for &c in pair {
            let nibble = c
                .to_digit(16)
                .ok_or_else(|| format!("{c:?} is not a hexadecimal digit"))?;
            byte = (byte << 4) | nibble as u8;
        }
        if let Some(slot) = out.get_mut(i) {
            *slot = byte;
        }
    }
    if out == [0; 16] {
        return Err("the nil uuid is not a valid type id".into());
    }
    Ok(out)
}

fn message_box_impl(input: &DeriveInput) -> syn::Result<TokenStream2> {
    reject_generics(input, "MessageBox")?;
    let data = match &input.data {
        Data::Enum(data) => data,
        Data::Struct(s) => {
            return Err(syn::Error::new(
                s.struct_token.span,
                "#[derive(MessageBox)] works on enums of payload types, like \
                 `enum Msg { A(A), B(B) }`; for a single struct derive `busbar::TypeUuid` \
                 and serde instead, which makes it a MessageBox",
            ))
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "#[derive(MessageBox)] works on enums only",
            ))
        }
    };
    let no_from = parse_message_box_attrs(input)?;
    if data.variants.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(MessageBox)] needs at least one variant",
        ));
    }

    let mut variants = Vec::with_capacity(data.variants.len());
    for v in &data.variants {
        let ty = match &v.fields {
            Fields::Unnamed(f) if f.unnamed.len() == 1 => &f.unnamed[0].ty,
            Fields::Unnamed(f) => {
                return Err(syn::Error::new_spanned(
                    f,
                    format!(
                        "#[derive(MessageBox)]: variant `{}` must have exactly one field, \
                         like `{}(T)`; wrap several values in one type",
                        v.ident, v.ident
                    ),
                ))
            }
            Fields::Named(f) => {
                return Err(syn::Error::new_spanned(
                    f,
                    format!(
                        "#[derive(MessageBox)]: variant `{}` must be a tuple variant with one \
                         field, like `{}(T)`",
                        v.ident, v.ident
                    ),
                ))
            }
            Fields::Unit => {
                return Err(syn::Error::new_spanned(
                    v,
                    format!(
                        "#[derive(MessageBox)]: unit variant `{}` carries no payload; \
                         every variant must wrap one payload type, like `{}(T)`",
                        v.ident, v.ident
                    ),
                ))
            }
        };
        if let Some((_, d)) = &v.discriminant {
            return Err(syn::Error::new_spanned(
                d,
                "#[derive(MessageBox)]: explicit discriminants are not supported",
            ));
        }
        variants.push((&v.ident, ty));
    }

    let ident = &input.ident;
    let arms_uuid = variants.iter().map(|(v, ty)| {
        quote_spanned! {ty.span()=>
            #ident::#v(__busbar_inner) => <#ty as ::busbar::MessageBox>::type_uuid(__busbar_inner),
        }
    });
    let arms_encode = variants.iter().map(|(v, ty)| {
        quote_spanned! {ty.span()=>
            #ident::#v(__busbar_inner) =>
                <#ty as ::busbar::MessageBox>::encode_into(__busbar_inner, __busbar_out),
        }
    });
    let tries = variants.iter().map(|(v, ty)| {
        quote_spanned! {ty.span()=>
            if let ::core::option::Option::Some(__busbar_inner) =
                <#ty as ::busbar::MessageBox>::decode(__busbar_type_uuid, __busbar_bytes)?
            {
                return ::core::result::Result::Ok(::core::option::Option::Some(
                    #ident::#v(__busbar_inner),
                ));
            }
        }
    });

    let from_impls = if no_from {
        Vec::new()
    } else {
        let keys: Vec<String> = variants
            .iter()
            .map(|(_, ty)| ty.to_token_stream().to_string())
            .collect();
        variants
            .iter()
            .zip(&keys)
            .filter(|(_, key)| keys.iter().filter(|k| k == key).count() == 1)
            .map(|((v, ty), _)| {
                quote! {
                    impl ::core::convert::From<#ty> for #ident {
                        #[inline]
                        fn from(value: #ty) -> Self {
                            #ident::#v(value)
                        }
                    }
                }
            })
            .collect()
    };

    Ok(quote! {
        impl ::busbar::MessageBox for #ident {
            #[inline]
            fn type_uuid(&self) -> ::busbar::TypeUuidBytes {
                match self {
                    #(#arms_uuid)*
                }
            }

            #[inline]
            fn encode_into(
                &self,
                __busbar_out: &mut ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<(), ::busbar::CodecError> {
                match self {
                    #(#arms_encode)*
                }
            }

            fn decode(
                __busbar_type_uuid: ::busbar::TypeUuidBytes,
                __busbar_bytes: &[u8],
            ) -> ::core::result::Result<::core::option::Option<Self>, ::busbar::CodecError> {
                #(#tries)*
                ::core::result::Result::Ok(::core::option::Option::None)
            }
        }

        #(#from_impls)*
    })
}

/// Parses `#[message_box(no_from)]`; returns whether `From` impls are off.
fn parse_message_box_attrs(input: &DeriveInput) -> syn::Result<bool> {
    let mut no_from = false;
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("message_box"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("no_from") {
                no_from = true;
                Ok(())
            } else {
                Err(meta.error("unknown message_box option; the only one is `no_from`"))
            }
        })?;
    }
    Ok(no_from)
}

#[cfg(test)]
mod tests {
    use super::parse_uuid;

    #[test]
    fn parses_hyphenated_and_plain() {
        let want = [
            0x7f, 0xfc, 0xfe, 0x7f, 0x9c, 0xd3, 0x42, 0x97, 0xb1, 0x9e, 0x6c, 0x03, 0x66, 0x82,
            0x7e, 0xb0,
        ];
        assert_eq!(parse_uuid("7ffcfe7f-9cd3-4297-b19e-6c0366827eb0"), Ok(want));
        assert_eq!(parse_uuid("7FFCFE7F-9CD3-4297-B19E-6C0366827EB0"), Ok(want));
        assert_eq!(parse_uuid("7ffcfe7f9cd34297b19e6c0366827eb0"), Ok(want));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "7ffcfe7f-9cd3-4297-b19e-6c0366827eb",
            "7ffcfe7f-9cd3-4297-b19e-6c0366827eb00",
            "7ffcfe7f9-cd3-4297-b19e-6c0366827eb0",
            "7ffcfe7f-9cd3-4297-b19e-6c0366827ebg",
            "7ffcfe7f_9cd3_4297_b19e_6c0366827eb0",
            "7ffcfe7f-9cd3-4297-b19e-6c0366827-b0",
            "+ffcfe7f9cd34297b19e6c0366827eb0",
            "{7ffcfe7f-9cd3-4297-b19e-6c0366827e}",
            "00000000-0000-0000-0000-000000000000",
            "ééééééééééééééééé",
        ] {
            assert!(parse_uuid(bad).is_err(), "accepted {bad:?}");
        }
    }
}
