//! Which components may serve more than one request per instance (`reuse = N`).
//!
//! Reuse keeps a guest's memory and globals between requests. Most toolchains' guests are
//! fine with that; some break, and are refused at load by the toolchain their `producers`
//! sections name. To refuse another, add its name to [`BREAKS_UNDER_REUSE`].

use wasmparser::{KnownCustom, Parser, Payload};

/// Toolchains whose guests break when one instance serves a second request, as they name
/// themselves in a `producers` section, lowercase without dashes (componentize-js writes
/// `processed-by: ComponentizeJS`).
const BREAKS_UNDER_REUSE: &[&str] = &["componentizejs", "starlingmonkey"];

/// The toolchain that built `component` and whose guests break under reuse, if any: the
/// first one named in any `producers` section of the component or its modules.
pub(crate) fn breaks_under_reuse(component: &[u8]) -> Option<String> {
    for payload in Parser::new(0).parse_all(component) {
        let Ok(Payload::CustomSection(section)) = payload else {
            continue;
        };
        let KnownCustom::Producers(fields) = section.as_known() else {
            continue;
        };
        for value in fields
            .into_iter()
            .flatten()
            .flat_map(|field| field.values.into_iter().flatten())
        {
            let name = value.name.to_ascii_lowercase().replace('-', "");
            if BREAKS_UNDER_REUSE.iter().any(|t| name.contains(t)) {
                return Some(value.name.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use updraft_test_support::{CORE_MODULE, producers_section};

    /// An empty core module with `section`.
    fn module_with(section: &[u8]) -> Vec<u8> {
        let mut wasm = CORE_MODULE.to_vec();
        wasm.extend_from_slice(section);
        wasm
    }

    #[test]
    fn names_the_toolchain_that_breaks_and_passes_others() {
        let js = module_with(&producers_section("ComponentizeJS"));
        assert_eq!(breaks_under_reuse(&js).as_deref(), Some("ComponentizeJS"));
        let dashed = module_with(&producers_section("componentize-js"));
        assert_eq!(
            breaks_under_reuse(&dashed).as_deref(),
            Some("componentize-js")
        );
        let rust = module_with(&producers_section("wit-component"));
        assert_eq!(breaks_under_reuse(&rust), None);
        assert_eq!(breaks_under_reuse(&module_with(&[])), None);
    }
}
