//! The alias-expansion bound of YAML inputs.

/// A YAML text whose aliases expand beyond [`max_nodes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("YAML document too large once its aliases (*name) are expanded (more than {nodes} nodes)")]
pub struct TooLarge {
    pub nodes: usize,
}

/// Nodes a YAML text may hold once its aliases are expanded: 4 per byte of text (more than any
/// document without aliases can have) plus a margin for modest alias use.
pub fn max_nodes(text: &str) -> usize {
    text.len().saturating_mul(4).saturating_add(10_000)
}

/// Rejects a YAML text whose aliases expand it beyond [`max_nodes`] (a "billion laughs":
/// ten lines of anchors each used ten times by the next make 10^10 nodes). serde_yaml bounds
/// the number of alias jumps, not the nodes each one replays, so a 500-byte file took seconds
/// to load and far more with a few more lines (a fuzzing finding). This walk stops at the bound
/// without building anything; syntax errors are left to the real parse.
pub fn check_expansion(text: &str) -> Result<(), TooLarge> {
    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
        Visitor,
    };
    use std::cell::Cell;

    #[derive(Clone, Copy)]
    struct Count<'a> {
        left: &'a Cell<usize>,
    }
    const TOO_LARGE: &str = "YAML document too large once its aliases (*name) are expanded";
    impl Count<'_> {
        fn tick<E: de::Error>(self) -> Result<(), E> {
            match self.left.get().checked_sub(1) {
                Some(n) => {
                    self.left.set(n);
                    Ok(())
                }
                None => Err(E::custom(TOO_LARGE)),
            }
        }
    }
    impl<'de> DeserializeSeed<'de> for Count<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    macro_rules! scalars {
        ($($f:ident: $t:ty),*) => {$(
            fn $f<E: de::Error>(self, _: $t) -> Result<(), E> { self.tick() }
        )*};
    }
    impl<'de> Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any YAML value")
        }
        scalars!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
            visit_u128: u128, visit_f64: f64, visit_str: &str, visit_bytes: &[u8]);
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.tick()
        }
        fn visit_none<E: de::Error>(self) -> Result<(), E> {
            self.tick()
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            self.tick()?;
            d.deserialize_any(self)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            self.tick()?;
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            self.tick()?;
            while a.next_element_seed(self)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
            self.tick()?;
            while a.next_key_seed(self)?.is_some() {
                a.next_value_seed(self)?;
            }
            Ok(())
        }
        fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<(), A::Error> {
            // A tagged value (`!tag value`).
            self.tick()?;
            let (_, v) = a.variant_seed(self)?;
            v.newtype_variant_seed(self)
        }
    }

    let left = Cell::new(max_nodes(text));
    let counter = Count { left: &left };
    match counter.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(e) if e.to_string().contains(TOO_LARGE) => Err(TooLarge {
            nodes: max_nodes(text),
        }),
        _ => Ok(()),
    }
}
