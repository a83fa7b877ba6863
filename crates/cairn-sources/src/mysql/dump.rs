//! Reading mysqldump output as it streams: which tables it holds and how many rows each, and
//! cutting it down to chosen tables for a restore.
//!
//! Both work on the dump's own markers, not on a SQL parser. mysqldump (and mariadb-dump)
//! introduce every part with a comment line such as `-- Table structure for table `t``,
//! `-- Dumping data for table `t`` (a table's triggers follow its data, in the same part),
//! `-- Final view structure for view `v``, `-- Dumping routines for database 'd'`. What comes
//! before the first marker is the header (session settings); the footer restores them with
//! lines like `/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;`. Stored programs sit between
//! `DELIMITER ;;` and `DELIMITER ;`, where a marker-looking line is program text, not a marker.
//!
//! Data lines never hold a raw newline (mysqldump escapes it), so every line of the dump is
//! classified by its first bytes alone; long lines stream through without being held whole.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read};

/// Bytes of a line's start looked at to classify it (markers and identifiers are short).
const HEAD_MAX: usize = 1024;

/// A part of the dump, as its marker names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Structure(String),
    Data(String),
    /// The placeholder table a view gets until the views are created at the end.
    ViewPlaceholder(String),
    View(String),
    /// Events, routines, or a marker this code does not know.
    Other,
}

/// What one line is, judged by its start.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Marker(Section),
    /// `DELIMITER x`: `true` when a stored-program block starts (the delimiter is not `;`).
    Delimiter(bool),
    /// The first line that restores the session settings of the header.
    Footer,
    Other,
}

fn classify(line: &[u8], in_block: bool) -> Line {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"DELIMITER ") {
        return Line::Delimiter(rest.trim_ascii() != b";");
    }
    if in_block {
        return Line::Other;
    }
    type Named = fn(String) -> Section;
    const MARKERS: [(&[u8], Named); 5] = [
        (b"-- Table structure for table ", Section::Structure),
        (b"-- Dumping data for table ", Section::Data),
        (b"-- Temporary table structure for view ", Section::ViewPlaceholder),
        (b"-- Temporary view structure for view ", Section::ViewPlaceholder),
        (b"-- Final view structure for view ", Section::View),
    ];
    for (prefix, section) in MARKERS {
        if let Some(rest) = line.strip_prefix(prefix) {
            return Line::Marker(identifier(rest).map_or(Section::Other, section));
        }
    }
    if line.starts_with(b"-- Dumping events for database ") || line.starts_with(b"-- Dumping routines for database ") {
        return Line::Marker(Section::Other);
    }
    let restores_setting = line.starts_with(b"/*!") && contains(line, b"=@OLD_");
    if restores_setting || line.starts_with(b"-- Dump completed") {
        return Line::Footer;
    }
    Line::Other
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The backtick-quoted identifier at the start of `text` (a doubled backtick is one).
fn identifier(text: &[u8]) -> Option<String> {
    let mut bytes = text.strip_prefix(b"`")?.iter().copied().peekable();
    let mut name = Vec::new();
    while let Some(b) = bytes.next() {
        if b == b'`' {
            if bytes.peek() != Some(&b'`') {
                return Some(String::from_utf8_lossy(&name).into_owned());
            }
            bytes.next();
        }
        name.push(b);
    }
    None
}

/// What a dump holds, learnt while it streams past.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Contents {
    /// Tables (with their structure in the dump) and the rows of their INSERT statements.
    pub tables: BTreeMap<String, u64>,
    pub views: BTreeSet<String>,
}

/// Counts tables and rows of a dump fed to it in pieces of any size.
#[derive(Default)]
pub(super) struct Scanner {
    contents: Contents,
    /// The start of the current line (outside INSERT statements).
    head: Vec<u8>,
    in_block: bool,
    in_data: bool,
    insert: Option<Insert>,
}

/// An INSERT statement being read.
struct Insert {
    /// `None` until the table name and `VALUES` have been read (kept in the scanner's `head`).
    table: Option<String>,
    /// Parenthesis depth outside strings; a tuple starts at depth 0.
    depth: u32,
    quote: Option<u8>,
    escaped: bool,
}

impl Scanner {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            match &mut self.insert {
                Some(insert @ Insert { table: Some(_), .. }) => {
                    let (used, tuples, ended) = insert.values(bytes);
                    let table = insert.table.clone().unwrap_or_default();
                    *self.contents.tables.entry(table).or_default() += tuples;
                    bytes = &bytes[used..];
                    if ended {
                        self.insert = None;
                        self.head.clear();
                    }
                }
                _ => {
                    self.text_byte(first);
                    bytes = rest;
                }
            }
        }
    }

    /// What the dump held; a statement cut off at the end is counted as far as it went.
    pub fn finish(self) -> Contents {
        self.contents
    }

    fn text_byte(&mut self, b: u8) {
        if b == b'\n' {
            if self.insert.take().is_none() {
                self.end_of_line();
            }
            self.head.clear();
            return;
        }
        if self.head.len() < HEAD_MAX {
            self.head.push(b);
        }
        match &mut self.insert {
            Some(insert) => {
                // Still before `VALUES`: skip backtick-quoted names (a column could be
                // called VALUES); the table is the first name after INSERT INTO.
                if b == b'`' {
                    insert.quote = if insert.quote.is_some() { None } else { Some(b) };
                }
                let tail = &self.head[self.head.len().saturating_sub(6)..];
                if insert.quote.is_none() && tail.eq_ignore_ascii_case(b"VALUES") {
                    let start = self.head.iter().position(|&c| c == b'`').unwrap_or(self.head.len());
                    insert.table = Some(identifier(&self.head[start..]).unwrap_or_default());
                    insert.quote = None;
                }
            }
            None if self.in_data && !self.in_block && (self.head == b"INSERT " || self.head == b"REPLACE ") => {
                self.insert = Some(Insert { table: None, depth: 0, quote: None, escaped: false });
            }
            None => {}
        }
    }

    fn end_of_line(&mut self) {
        match classify(&self.head, self.in_block) {
            Line::Delimiter(block) => self.in_block = block,
            Line::Marker(section) => {
                self.in_data = matches!(section, Section::Data(_));
                match section {
                    Section::Structure(t) => {
                        self.contents.tables.entry(t).or_default();
                    }
                    Section::View(v) | Section::ViewPlaceholder(v) => {
                        self.contents.views.insert(v);
                    }
                    Section::Data(_) | Section::Other => {}
                }
            }
            Line::Footer | Line::Other => {}
        }
    }
}

impl Insert {
    /// Read the VALUES list from `bytes`; returns the bytes used, the tuples begun, and whether
    /// the `;` that ends the statement was reached (it is the last byte used).
    fn values(&mut self, bytes: &[u8]) -> (usize, u64, bool) {
        let mut tuples = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(q) = self.quote {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == q {
                    self.quote = None;
                }
                continue;
            }
            match b {
                b'\'' | b'"' => self.quote = Some(b),
                b'(' => {
                    tuples += u64::from(self.depth == 0);
                    self.depth += 1;
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                b';' if self.depth == 0 => return (i + 1, tuples, true),
                _ => {}
            }
        }
        (bytes.len(), tuples, false)
    }
}

/// A reader that feeds everything read through it to a [`Scanner`].
pub(super) struct Scanning<R> {
    pub inner: R,
    pub scanner: Scanner,
}

impl<R: Read> Read for Scanning<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scanner.feed(&buf[..n]);
        Ok(n)
    }
}

/// A dump cut down to the header, the footer and the parts (structure, data with triggers,
/// view) of chosen tables and views. Routines and events are left out.
pub(super) struct TableFilter<R> {
    inner: R,
    chosen: BTreeSet<String>,
    /// Whether the current part is kept (the header is).
    keeping: bool,
    in_block: bool,
    /// Past the first footer line: everything is kept.
    footer: bool,
    /// Bytes decided on but not yet returned.
    pending: Vec<u8>,
    pending_at: usize,
    /// Inside a line whose start has been judged: keep its rest or not.
    rest_of_line: Option<bool>,
}

impl<R: BufRead> TableFilter<R> {
    pub fn new(inner: R, chosen: impl IntoIterator<Item = String>) -> TableFilter<R> {
        TableFilter {
            inner,
            chosen: chosen.into_iter().collect(),
            keeping: true,
            in_block: false,
            footer: false,
            pending: Vec::new(),
            pending_at: 0,
            rest_of_line: None,
        }
    }

    /// Read the start of the next line and judge it; `false` at the end of the input.
    fn next_line(&mut self) -> std::io::Result<bool> {
        self.pending.clear();
        self.pending_at = 0;
        let mut complete = false;
        while self.pending.len() < HEAD_MAX {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let room = HEAD_MAX - self.pending.len();
            let (take, newline) = match buf.iter().take(room).position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len().min(room), false),
            };
            self.pending.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
            if newline {
                complete = true;
                break;
            }
        }
        if self.pending.is_empty() {
            return Ok(false);
        }
        let text = self.pending.strip_suffix(b"\n").unwrap_or(&self.pending);
        let keep = self.judge(classify(text, self.in_block));
        if !keep {
            self.pending.clear();
        }
        self.rest_of_line = (!complete).then_some(keep);
        Ok(true)
    }

    fn judge(&mut self, line: Line) -> bool {
        match line {
            Line::Delimiter(block) => self.in_block = block,
            Line::Footer => self.footer = true,
            Line::Marker(section) => {
                self.keeping = match section {
                    Section::Structure(t) | Section::Data(t) => self.chosen.contains(&t),
                    Section::ViewPlaceholder(v) | Section::View(v) => self.chosen.contains(&v),
                    Section::Other => false,
                }
            }
            Line::Other => {}
        }
        self.keeping || self.footer
    }
}

impl<R: BufRead> Read for TableFilter<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pending_at < self.pending.len() {
                let n = out.len().min(self.pending.len() - self.pending_at);
                out[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
                self.pending_at += n;
                return Ok(n);
            }
            let Some(keep) = self.rest_of_line else {
                if !self.next_line()? {
                    return Ok(0);
                }
                continue;
            };
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(0);
            }
            let (take, newline) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let take = if keep { take.min(out.len()) } else { take };
            if keep {
                out[..take].copy_from_slice(&buf[..take]);
            }
            let line_ended = newline && buf[take - 1] == b'\n';
            self.inner.consume(take);
            if line_ended {
                self.rest_of_line = None;
            }
            if keep {
                return Ok(take);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(dump: &str, piece: usize) -> Contents {
        let mut s = Scanner::default();
        for chunk in dump.as_bytes().chunks(piece) {
            s.feed(chunk);
        }
        s.finish()
    }

    const DUMP: &str = r#"/*M!999999\- enable the sandbox mode */ 
-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET NAMES utf8mb4 */;
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;

--
-- Table structure for table `empty`
--

DROP TABLE IF EXISTS `empty`;
CREATE TABLE `empty` (
  `id` int(11) NOT NULL
) ENGINE=InnoDB;

--
-- Dumping data for table `empty`
--

LOCK TABLES `empty` WRITE;
UNLOCK TABLES;

--
-- Table structure for table `odd``name`
--

DROP TABLE IF EXISTS `odd``name`;
CREATE TABLE `odd``name` (`id` int(11) NOT NULL, `s` text, `b` blob);

--
-- Dumping data for table `odd``name`
--

LOCK TABLES `odd``name` WRITE;
INSERT INTO `odd``name` VALUES
(1,'a\'b\\c),(x\nz',0x00FF2829),
(2,'it''s (not) a tuple; really',NULL),
(3,"dq ) ( ;",0x28);
INSERT INTO `odd``name` VALUES (4,'\\',NULL),(5,'\\\'',0x29),(6,'',NULL);
UNLOCK TABLES;
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON `odd``name` FOR EACH ROW
INSERT INTO `log` VALUES (1),(2),(3)
*/;;
DELIMITER ;
/*!50003 SET character_set_client  = @saved_cs_client */ ;

--
-- Table structure for table `log`
--

DROP TABLE IF EXISTS `log`;
CREATE TABLE `log` (`n` int(11));

--
-- Dumping data for table `log`
--

LOCK TABLES `log` WRITE;
INSERT INTO `log` (`VALUES`, `n`) VALUES (7,8);
UNLOCK TABLES;

--
-- Temporary table structure for view `v`
--

DROP TABLE IF EXISTS `v`;
/*!50001 CREATE VIEW `v` AS SELECT 1 AS `id` */;

--
-- Dumping routines for database 'app'
--
DELIMITER ;;
CREATE PROCEDURE `p`()
-- Table structure for table `fake`
INSERT INTO `log` VALUES (9)
;;
DELIMITER ;

--
-- Final view structure for view `v`
--

/*!50001 DROP VIEW IF EXISTS `v`*/;
/*!50001 VIEW `v` AS select `odd``name`.`id` AS `id` from `odd``name` */;
/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;

/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;

-- Dump completed
"#;

    #[test]
    fn rows_are_counted_whatever_the_strings_hold() {
        let expected = Contents {
            tables: [("empty".to_string(), 0), ("odd`name".to_string(), 6), ("log".to_string(), 1)].into(),
            views: ["v".to_string()].into(),
        };
        // Pieces of every size: state must carry across any boundary.
        for piece in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(scan(DUMP, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn one_line_extended_inserts_and_binary_escapes() {
        let dump = "-- Table structure for table `t`\n-- Dumping data for table `t`\n\
                    INSERT INTO `t` VALUES (1,'\\0\\Z\\r\\n'),(2,'(('),(3,')),(('),(4,0x5C27),(5,'\\\\'),(6,'x\\'),(y');\n\
                    INSERT INTO `t` VALUES (7,'a');\n";
        assert_eq!(scan(dump, 5).tables["t"], 7);
        // A statement cut off mid-way counts the tuples that began.
        let cut = dump.rfind("(7").unwrap();
        assert_eq!(scan(&dump[..cut], 3).tables["t"], 6);
        assert_eq!(scan(&dump[..cut + 1], 3).tables["t"], 7);
    }

    fn filter(dump: &str, chosen: &[&str], buf_size: usize, read_size: usize) -> String {
        let inner = std::io::BufReader::with_capacity(buf_size, dump.as_bytes());
        let mut f = TableFilter::new(inner, chosen.iter().map(|s| s.to_string()));
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn filter_keeps_header_footer_and_chosen_parts() {
        let out = filter(DUMP, &["odd`name", "v"], 8192, 8192);
        assert!(out.starts_with("/*M!999999"), "header kept");
        assert!(out.contains("SET NAMES utf8mb4"));
        assert!(out.contains("CREATE TABLE `odd``name`"));
        assert!(out.contains("(3,\"dq ) ( ;\",0x28);"));
        assert!(out.contains("TRIGGER tr BEFORE INSERT"), "triggers follow their table's data");
        assert!(out.contains("VIEW `v` AS select"));
        assert!(out.contains("SET SQL_MODE=@OLD_SQL_MODE") && out.ends_with("-- Dump completed\n"), "footer kept");
        assert!(!out.contains("`empty`") && !out.contains("CREATE TABLE `log`") && !out.contains("(7,8)"));
        assert!(!out.contains("PROCEDURE"), "routines are left out");
        assert_eq!(scan(&out, 4096).tables, [("odd`name".to_string(), 6)].into());
    }

    #[test]
    fn filter_streams_long_lines_through_small_buffers() {
        let long = format!("(1,'{}')", "x".repeat(5000));
        let dump = DUMP.replace("(6,'',NULL)", &long);
        let wanted = filter(&dump, &["odd`name"], 8192, 8192);
        assert!(wanted.contains(&long));
        for (buf_size, read_size) in [(1, 1), (3, 7), (100, 13), (4096, 1)] {
            assert_eq!(filter(&dump, &["odd`name"], buf_size, read_size), wanted, "{buf_size}/{read_size}");
        }
        let only_log = filter(&dump, &["log"], 5, 3);
        assert!(!only_log.contains(&long) && only_log.contains("(7,8)"));
    }

    #[test]
    fn nothing_chosen_leaves_header_and_footer() {
        let out = filter(DUMP, &[], 8192, 8192);
        assert!(!out.contains("CREATE TABLE") && !out.contains("INSERT"));
        assert!(out.contains("SET NAMES") && out.contains("@OLD_SQL_MODE */;"));
    }
}
