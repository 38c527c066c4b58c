//! `incubator plugins list`.

use incubator_core::plugin::Origin;

pub fn list() -> anyhow::Result<()> {
    println!("{:<12} {:<20} {:<10} origin", "kind", "name", "version");
    for l in super::registry().list() {
        let origin = match &l.origin {
            Origin::BuiltIn => "built in".to_string(),
            Origin::Library(p) => p.display().to_string(),
        };
        println!("{:<12} {:<20} {:<10} {origin}", l.kind, l.name, l.version);
    }
    Ok(())
}
