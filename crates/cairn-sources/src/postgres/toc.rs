//! The table of contents of a `pg_dump` archive, and the part of it a restore of chosen
//! tables needs.
//!
//! `pg_restore -t` restores a table's definition and rows only: its indexes, constraints,
//! triggers, defaults, policies, owned sequences, comments and grants are entries of their
//! own in the archive. [`Toc::select`] finds them through the dependencies that
//! `pg_restore --list --verbose` prints under each entry (`;\tdepends on: 217 3229`), so a
//! capture needs nothing recorded beyond the archive itself. The chosen lines, in archive
//! order, become the list file of `pg_restore --use-list`.
//!
//! What is taken:
//! - the chosen tables and every entry that belongs to them (their kinds are [`BELONGING`]),
//!   found downwards through the dependencies;
//! - into a new database, also what those need that is not a table (schemas, types,
//!   functions, extensions, sequences), upwards, with their comments and grants; an
//!   existing database is expected to have those already;
//! - into an existing database, the views there on what is restored (they would keep the
//!   tables from being dropped), dropped and made again with it;
//! - foreign keys between a chosen table and another table only when that other table is
//!   in the target database too. One of a chosen table that is left out is reported; so is
//!   anything else of theirs that needs a table the restore does not bring.

use std::collections::{BTreeSet, HashMap, HashSet};

/// Descriptions of entries (`pg_dump`'s `desc`), longest first where one starts another.
const KNOWN: &[&str] = &[
    "MATERIALIZED VIEW DATA",
    "MATERIALIZED VIEW",
    "SEQUENCE OWNED BY",
    "SEQUENCE SET",
    "SEQUENCE",
    "TABLE DATA",
    "TABLE ATTACH",
    "TABLE",
    "FOREIGN TABLE",
    "FK CONSTRAINT",
    "CHECK CONSTRAINT",
    "CONSTRAINT",
    "INDEX ATTACH",
    "INDEX",
    "STATISTICS DATA",
    "STATISTICS",
    "ROW SECURITY",
    "SECURITY LABEL",
    "DEFAULT ACL",
    "DEFAULT",
    "COMMENT",
    "ACL",
    "TRIGGER",
    "RULE",
    "POLICY",
    "VIEW",
];

/// Kinds of entries that belong to the relation they depend on.
const BELONGING: &[&str] = &[
    "TABLE DATA",
    "COMMENT",
    "ACL",
    "SECURITY LABEL",
    "SEQUENCE",
    "SEQUENCE SET",
    "SEQUENCE OWNED BY",
    "DEFAULT",
    "CONSTRAINT",
    "CHECK CONSTRAINT",
    "FK CONSTRAINT",
    "INDEX",
    "STATISTICS",
    "STATISTICS DATA",
    "TRIGGER",
    "RULE",
    "POLICY",
    "ROW SECURITY",
];

/// Kinds that describe another object (and come along with it wherever it is taken).
const DESCRIBING: &[&str] = &["COMMENT", "ACL", "SECURITY LABEL", "SEQUENCE SET", "STATISTICS DATA"];

/// Relations (and their contents): never taken unless chosen.
const RELATIONS: &[&str] =
    &["TABLE", "TABLE DATA", "VIEW", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "FOREIGN TABLE", "TABLE ATTACH"];

/// Relations made from others.
const VIEWS: &[&str] = &["VIEW", "MATERIALIZED VIEW"];

/// Session settings `pg_restore` applies whatever the list says.
const SETTINGS: &[&str] = &["ENCODING", "STDSTRINGS", "SEARCHPATH"];

/// One entry of the listing.
#[derive(Debug, Clone)]
struct Entry {
    id: u32,
    /// The line as listed (what the list file gets).
    line: String,
    desc: String,
    /// `schema tag owner`, as listed.
    rest: String,
    deps: Vec<u32>,
}

impl Entry {
    fn is(&self, kinds: &[&str]) -> bool {
        kinds.contains(&self.desc.as_str())
    }

    /// Whether this entry's schema and name are one of `wanted` (`schema name` each).
    fn names(&self, wanted: &HashSet<String>) -> bool {
        wanted.contains(self.named()) || self.prefixes().any(|p| wanted.contains(p))
    }

    /// Whether this entry's schema and name are `wanted`: exactly when the owner is one
    /// word; `exact` false also takes an owner of several words.
    fn is_named(&self, wanted: &str, exact: bool) -> bool {
        self.named() == wanted || !exact && self.prefixes().any(|p| p == wanted)
    }

    /// `rest` cut before each of its spaces: the ways to read it as names and an owner.
    fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.rest.match_indices(' ').map(|(at, _)| &self.rest[..at])
    }

    /// Schema and name, without the owner (the last word).
    fn named(&self) -> &str {
        self.rest.rsplit_once(' ').map_or(self.rest.as_str(), |(named, _)| named)
    }

    /// How the entry is named in messages: `FK CONSTRAINT public orders orders_item_fkey`.
    fn label(&self) -> String {
        format!("{} {}", self.desc, self.named())
    }
}

/// A parsed `pg_restore --list --verbose`.
#[derive(Debug)]
pub(super) struct Toc {
    entries: Vec<Entry>,
    /// Entry id → position in `entries`.
    at: HashMap<u32, usize>,
}

/// The entries to restore, and what was left out.
#[derive(Debug, PartialEq)]
pub(super) struct Selection {
    /// The list file for `pg_restore --use-list`.
    pub list: String,
    /// Entries of the chosen tables left out, each with the reason.
    pub left_out: Vec<String>,
}

/// Where the chosen tables go.
pub(super) enum Target<'a> {
    /// A database made for this restore: it has nothing yet.
    New,
    /// An existing database, with these relations (`schema name`).
    Existing(&'a HashSet<String>),
}

impl Toc {
    pub fn parse(listing: &str) -> Toc {
        let mut entries: Vec<Entry> = Vec::new();
        for line in listing.lines() {
            if let Some(deps) = line.strip_prefix(";\tdepends on:") {
                if let Some(last) = entries.last_mut() {
                    last.deps.extend(deps.split_whitespace().filter_map(|d| d.parse::<u32>().ok()));
                }
                continue;
            }
            if let Some(entry) = parse_entry(line) {
                entries.push(entry);
            }
        }
        let at = entries.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
        Toc { entries, at }
    }

    fn get(&self, id: u32) -> Option<&Entry> {
        self.at.get(&id).map(|&i| &self.entries[i])
    }

    /// The entries that restore `tables` (`schema name` each) into `target`. Errors name a
    /// chosen table that is not in the archive, or one that cannot be made without a
    /// relation the restore does not bring.
    pub fn select(&self, tables: &HashSet<String>, target: Target<'_>) -> Result<Selection, String> {
        let mut chosen = BTreeSet::new();
        for wanted in tables {
            let of = |exact| self.entries.iter().filter(move |e| e.desc == "TABLE" && e.is_named(wanted, exact));
            let before = chosen.len();
            chosen.extend(of(true).map(|e| e.id));
            if chosen.len() == before {
                chosen.extend(of(false).map(|e| e.id));
            }
            if chosen.len() == before {
                return Err(format!("table {wanted:?} is not in the archive's table of contents"));
            }
        }

        // What belongs to the chosen tables.
        let mut owned = chosen.clone();
        self.close(&mut owned, |e| e.is(BELONGING));
        let mut taken = owned.clone();
        if let Target::New = target {
            // What they need that is neither a relation nor part of one (a sequence may
            // stand alone), and what describes that.
            let prerequisite = |e: &Entry| !e.is(RELATIONS) && (!e.is(BELONGING) || e.desc == "SEQUENCE");
            loop {
                let needed: Vec<u32> = taken
                    .iter()
                    .filter_map(|&id| self.get(id))
                    .flat_map(|e| e.deps.iter().copied())
                    .filter(|d| !taken.contains(d) && self.get(*d).is_some_and(prerequisite))
                    .collect();
                if needed.is_empty() {
                    break;
                }
                taken.extend(needed);
            }
            self.close(&mut taken, |e| e.is(DESCRIBING));
        }

        if let Target::Existing(relations) = target {
            // Views of the database on what is restored would keep it from being dropped:
            // they are dropped and made again too.
            loop {
                let before = taken.len();
                let views = self.entries.iter().filter(|e| {
                    !taken.contains(&e.id)
                        && e.is(VIEWS)
                        && e.names(relations)
                        && e.deps.iter().any(|d| taken.contains(d))
                });
                let views: Vec<u32> = views.map(|e| e.id).collect();
                taken.extend(views);
                self.close(&mut taken, |e| e.is(BELONGING) || e.desc == "MATERIALIZED VIEW DATA");
                if taken.len() == before {
                    break;
                }
            }
        }

        // An entry that needs a relation that will not be there cannot be made; nor can
        // what needs that entry. `dropped`: (entry, the relation it misses).
        let mut dropped: HashMap<u32, u32> = HashMap::new();
        loop {
            let cannot: Vec<(&Entry, &Entry)> = self
                .entries
                .iter()
                .filter(|e| taken.contains(&e.id))
                .filter_map(|e| {
                    let deps = e.deps.iter().filter_map(|&d| self.get(d));
                    deps.into_iter().find_map(|d| self.absent(d, &taken, &dropped, &target)).map(|m| (e, m))
                })
                .collect();
            if cannot.is_empty() {
                break;
            }
            for (entry, missing) in cannot {
                if chosen.contains(&entry.id) {
                    return Err(format!(
                        "{} needs {}, which is neither restored nor in the target",
                        entry.label(),
                        missing.label()
                    ));
                }
                taken.remove(&entry.id);
                dropped.insert(entry.id, missing.id);
            }
        }

        let list = self
            .entries
            .iter()
            .filter(|e| taken.contains(&e.id) || e.is(SETTINGS))
            .map(|e| format!("{}\n", e.line))
            .collect();
        // Reported: what belongs to a chosen table, but not what belongs to the missing
        // relation itself (another table's foreign key to a chosen one), nor what only
        // describes something already reported.
        let mut left_out: Vec<(&Entry, &Entry)> =
            dropped.iter().filter_map(|(&id, &missing)| Some((self.get(id)?, self.get(missing)?))).collect();
        // In the archive's order.
        left_out.sort_by_key(|(e, _)| self.at[&e.id]);
        let left_out = left_out
            .into_iter()
            .filter(|(e, missing)| {
                owned.contains(&e.id) && !e.is(DESCRIBING) && !e.rest.starts_with(&format!("{} ", missing.named()))
            })
            .map(|(e, missing)| {
                format!(
                    "left out {}: it needs {}, which is neither restored nor in the target",
                    e.label(),
                    missing.label()
                )
            })
            .collect();
        Ok(Selection { list, left_out })
    }

    /// The relation that makes `d` impossible to rely on, if `d` is not taken and will not
    /// be in the target: `d` itself, what it belongs to, or what made it be left out.
    fn absent<'t>(
        &'t self,
        d: &'t Entry,
        taken: &BTreeSet<u32>,
        dropped: &HashMap<u32, u32>,
        target: &Target<'_>,
    ) -> Option<&'t Entry> {
        if taken.contains(&d.id) {
            return None;
        }
        if let Some(&missing) = dropped.get(&d.id) {
            return self.get(missing);
        }
        if d.is(RELATIONS) {
            return match target {
                Target::New => Some(d),
                Target::Existing(relations) => (!d.names(relations)).then_some(d),
            };
        }
        if d.is(BELONGING) {
            // A constraint, index, … of a relation that is not restored: there if it is.
            let of = d.deps.iter().filter_map(|&id| self.get(id));
            return of.filter(|r| r.is(RELATIONS)).find_map(|r| self.absent(r, taken, dropped, target));
        }
        // A function, type, schema, …: taken into a new database, expected in an existing one.
        None
    }

    /// Add to `set`, until nothing changes, every entry of `kind` that depends on one in it.
    fn close(&self, set: &mut BTreeSet<u32>, kind: impl Fn(&Entry) -> bool) {
        loop {
            let before = set.len();
            for e in &self.entries {
                if !set.contains(&e.id) && kind(e) && e.deps.iter().any(|d| set.contains(d)) {
                    set.insert(e.id);
                }
            }
            if set.len() == before {
                return;
            }
        }
    }
}

/// `217; 1259 16396 TABLE public items postgres` → an entry (without dependencies yet).
fn parse_entry(line: &str) -> Option<Entry> {
    let (id, after) = line.split_once("; ")?;
    let id = id.parse().ok()?;
    let mut words = after.splitn(3, ' ');
    let (_catalog, _oid, described) = (words.next()?, words.next()?, words.next()?);
    let desc = KNOWN
        .iter()
        .find(|k| described.strip_prefix(**k).is_some_and(|r| r.starts_with(' ')))
        .map(|k| k.to_string())
        .unwrap_or_else(|| described.split(' ').next().unwrap_or_default().to_string());
    let rest = described[desc.len()..].trim_start_matches(' ').to_string();
    Some(Entry { id, line: line.to_string(), desc, rest, deps: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pg_restore --list --verbose` of a PostgreSQL 15 dump of: a type `mood`; a table
    /// `items` (serial key, unique and check constraints, an identity column, an index on an
    /// expression, a trigger calling `touch()`, row security with a policy, comments, a
    /// grant, extended statistics); `orders` (identity key, a foreign key to `items`, a
    /// rule); `uses_loose` (a default from a sequence no table owns, a foreign key to
    /// `items`); `other.t`; a view `v` on `items`.
    const LISTING: &str = "\
    ;\n\
    3392; 0 0 ENCODING - ENCODING \n\
    3393; 0 0 STDSTRINGS - STDSTRINGS \n\
    3394; 0 0 SEARCHPATH - SEARCHPATH \n\
    3395; 1262 16387 DATABASE - tocx postgres\n\
    6; 2615 16393 SCHEMA - other postgres\n\
    847; 1247 16389 TYPE public mood postgres\n\
    224; 1255 16423 FUNCTION public touch() postgres\n\
    220; 1259 16420 TABLE other t postgres\n\
    ;\tdepends on: 6\n\
    217; 1259 16396 TABLE public items postgres\n\
    ;\tdepends on: 847\n\
    3396; 0 0 COMMENT public TABLE items postgres\n\
    ;\tdepends on: 217\n\
    3397; 0 0 COMMENT public COLUMN items.name postgres\n\
    ;\tdepends on: 217\n\
    3398; 0 0 ACL public TABLE items postgres\n\
    ;\tdepends on: 217\n\
    215; 1259 16394 SEQUENCE public items_id_seq postgres\n\
    ;\tdepends on: 217\n\
    3399; 0 0 SEQUENCE OWNED BY public items_id_seq postgres\n\
    ;\tdepends on: 215\n\
    216; 1259 16395 SEQUENCE public items_n_seq postgres\n\
    ;\tdepends on: 217\n\
    221; 1259 16427 SEQUENCE public loose postgres\n\
    219; 1259 16409 TABLE public orders postgres\n\
    218; 1259 16408 SEQUENCE public orders_id_seq postgres\n\
    ;\tdepends on: 219\n\
    222; 1259 16428 TABLE public uses_loose postgres\n\
    ;\tdepends on: 221\n\
    223; 1259 16438 VIEW public v postgres\n\
    ;\tdepends on: 217 217 217 217 847\n\
    3221; 2604 16399 DEFAULT public items id postgres\n\
    ;\tdepends on: 215 217 217\n\
    3387; 0 16420 TABLE DATA other t postgres\n\
    ;\tdepends on: 220\n\
    3384; 0 16396 TABLE DATA public items postgres\n\
    ;\tdepends on: 217\n\
    3386; 0 16409 TABLE DATA public orders postgres\n\
    ;\tdepends on: 219\n\
    3389; 0 16428 TABLE DATA public uses_loose postgres\n\
    ;\tdepends on: 222\n\
    3400; 0 0 SEQUENCE SET public items_id_seq postgres\n\
    ;\tdepends on: 215\n\
    3401; 0 0 SEQUENCE SET public items_n_seq postgres\n\
    ;\tdepends on: 216\n\
    3402; 0 0 SEQUENCE SET public loose postgres\n\
    ;\tdepends on: 221\n\
    3403; 0 0 SEQUENCE SET public orders_id_seq postgres\n\
    ;\tdepends on: 218\n\
    3227; 2606 16406 CONSTRAINT public items items_name_key postgres\n\
    ;\tdepends on: 217\n\
    3229; 2606 16404 CONSTRAINT public items items_pkey postgres\n\
    ;\tdepends on: 217\n\
    3231; 2606 16414 CONSTRAINT public orders orders_pkey postgres\n\
    ;\tdepends on: 219\n\
    3225; 1259 16407 INDEX public items_lower postgres\n\
    ;\tdepends on: 217 217\n\
    3404; 0 0 COMMENT public INDEX items_lower postgres\n\
    ;\tdepends on: 3225\n\
    3232; 3381 16437 STATISTICS public st1 postgres\n\
    ;\tdepends on: 217 217\n\
    3378; 2618 16425 RULE public orders r1 postgres\n\
    ;\tdepends on: 219 219\n\
    3235; 2620 16424 TRIGGER public items trg postgres\n\
    ;\tdepends on: 224 217\n\
    3233; 2606 16415 FK CONSTRAINT public orders orders_item_fkey postgres\n\
    ;\tdepends on: 3229 217 219\n\
    3234; 2606 16432 FK CONSTRAINT public uses_loose uses_loose_item_fkey postgres\n\
    ;\tdepends on: 222 217 3229\n\
    3380; 0 16396 ROW SECURITY public items postgres\n\
    ;\tdepends on: 217\n\
    3381; 3256 16426 POLICY public items p1 postgres\n\
    ;\tdepends on: 217\n";

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// The labels of the selected entries, in listing order.
    fn labels(selection: &Selection) -> Vec<String> {
        Toc::parse(&selection.list).entries.iter().map(Entry::label).collect()
    }

    #[test]
    fn entries_and_their_dependencies_are_read() {
        let toc = Toc::parse(LISTING);
        assert_eq!(toc.entries.len(), 41);
        let fk = toc.entries.iter().find(|e| e.id == 3233).unwrap();
        assert_eq!((fk.desc.as_str(), fk.rest.as_str()), ("FK CONSTRAINT", "public orders orders_item_fkey postgres"));
        assert_eq!(fk.deps, [3229, 217, 219]);
        assert_eq!(fk.label(), "FK CONSTRAINT public orders orders_item_fkey");
        let settings = toc.entries.iter().find(|e| e.id == 3392).unwrap();
        assert_eq!((settings.desc.as_str(), settings.named()), ("ENCODING", "- ENCODING"));
    }

    #[test]
    fn a_table_into_a_new_database_brings_what_belongs_to_it_and_what_it_needs() {
        let toc = Toc::parse(LISTING);
        let chosen = toc.select(&set(&["public items"]), Target::New).unwrap();
        assert_eq!(
            labels(&chosen),
            [
                "ENCODING - ENCODING",
                "STDSTRINGS - STDSTRINGS",
                "SEARCHPATH - SEARCHPATH",
                "TYPE public mood",
                "FUNCTION public touch()",
                "TABLE public items",
                "COMMENT public TABLE items",
                "COMMENT public COLUMN items.name",
                "ACL public TABLE items",
                "SEQUENCE public items_id_seq",
                "SEQUENCE OWNED BY public items_id_seq",
                "SEQUENCE public items_n_seq",
                "DEFAULT public items id",
                "TABLE DATA public items",
                "SEQUENCE SET public items_id_seq",
                "SEQUENCE SET public items_n_seq",
                "CONSTRAINT public items items_name_key",
                "CONSTRAINT public items items_pkey",
                "INDEX public items_lower",
                "COMMENT public INDEX items_lower",
                "STATISTICS public st1",
                "TRIGGER public items trg",
                "ROW SECURITY public items",
                "POLICY public items p1",
            ]
        );
        // The foreign keys of other tables to it are theirs: not missed.
        assert_eq!(chosen.left_out, Vec::<String>::new());
    }

    #[test]
    fn a_foreign_key_to_a_table_that_will_not_be_there_is_left_out_and_reported() {
        let toc = Toc::parse(LISTING);
        let chosen = toc.select(&set(&["public uses_loose"]), Target::New).unwrap();
        assert_eq!(
            labels(&chosen)[3..],
            [
                "SEQUENCE public loose",
                "TABLE public uses_loose",
                "TABLE DATA public uses_loose",
                "SEQUENCE SET public loose"
            ]
        );
        assert_eq!(
            chosen.left_out,
            ["left out FK CONSTRAINT public uses_loose uses_loose_item_fkey: it needs TABLE public items, \
              which is neither restored nor in the target"]
        );
        // Restored together, the key comes along.
        let both = toc.select(&set(&["public uses_loose", "public items"]), Target::New).unwrap();
        assert!(labels(&both).contains(&"FK CONSTRAINT public uses_loose uses_loose_item_fkey".to_string()));
        assert!(!labels(&both).iter().any(|l| l.contains("orders")), "{:?}", labels(&both));
        assert_eq!(both.left_out, Vec::<String>::new());
    }

    #[test]
    fn into_an_existing_database_keys_to_tables_there_are_dropped_and_made_again() {
        let toc = Toc::parse(LISTING);
        let there = set(&["public orders", "public v", "other t"]);
        let chosen = toc.select(&set(&["public items"]), Target::Existing(&there)).unwrap();
        let taken = labels(&chosen);
        assert!(taken.contains(&"FK CONSTRAINT public orders orders_item_fkey".to_string()), "{taken:?}");
        // uses_loose is not there: its key is not made, and it is not missed.
        assert!(!taken.iter().any(|l| l.contains("uses_loose")), "{taken:?}");
        // What is not a relation is expected to be there already.
        assert!(!taken.iter().any(|l| l.starts_with("TYPE") || l.starts_with("FUNCTION")), "{taken:?}");
        assert!(taken.contains(&"TRIGGER public items trg".to_string()));
        // The view on it is there: it is made again (and is not, when it is not there).
        assert!(taken.contains(&"VIEW public v".to_string()), "{taken:?}");
        assert_eq!(chosen.left_out, Vec::<String>::new());
        let without_view = toc.select(&set(&["public items"]), Target::Existing(&set(&["public orders"]))).unwrap();
        assert!(!labels(&without_view).contains(&"VIEW public v".to_string()));

        // A key of a chosen table to a table that is there is made again.
        let chosen = toc.select(&set(&["public orders"]), Target::Existing(&set(&["public items"]))).unwrap();
        assert_eq!(
            labels(&chosen)[3..],
            [
                "TABLE public orders",
                "SEQUENCE public orders_id_seq",
                "TABLE DATA public orders",
                "SEQUENCE SET public orders_id_seq",
                "CONSTRAINT public orders orders_pkey",
                "RULE public orders r1",
                "FK CONSTRAINT public orders orders_item_fkey",
            ]
        );
    }

    #[test]
    fn a_table_missing_from_the_listing_is_named() {
        let toc = Toc::parse(LISTING);
        let err = toc.select(&set(&["public items", "public nope"]), Target::New).unwrap_err();
        assert_eq!(err, "table \"public nope\" is not in the archive's table of contents");
    }

    #[test]
    fn a_table_that_cannot_be_made_without_another_is_refused() {
        // `b`'s column default takes from a sequence that `a` owns.
        let listing = "\
            10; 1259 1 TABLE public a me\n\
            11; 1259 2 SEQUENCE public a_id_seq me\n;\tdepends on: 10\n\
            12; 1259 3 TABLE public b me\n;\tdepends on: 11\n";
        let toc = Toc::parse(listing);
        let err = toc.select(&set(&["public b"]), Target::New).unwrap_err();
        assert_eq!(err, "TABLE public b needs TABLE public a, which is neither restored nor in the target");
        let there = set(&["public a"]);
        assert_eq!(labels(&toc.select(&set(&["public b"]), Target::Existing(&there)).unwrap()), ["TABLE public b"]);
    }

    #[test]
    fn names_with_spaces_are_matched_whole() {
        let listing = "\
            10; 1259 1 TABLE other Odd Name me\n\
            11; 0 1 TABLE DATA other Odd Name me\n;\tdepends on: 10\n\
            12; 1259 3 TABLE other Odd me\n";
        let toc = Toc::parse(listing);
        let chosen = toc.select(&set(&["other Odd Name"]), Target::New).unwrap();
        assert_eq!(labels(&chosen), ["TABLE other Odd Name", "TABLE DATA other Odd Name"]);
        let chosen = toc.select(&set(&["other Odd"]), Target::New).unwrap();
        assert_eq!(labels(&chosen), ["TABLE other Odd"]);
    }
}
