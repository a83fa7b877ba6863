//! Page stream vs logical dump for the SQLite source (being written).

fn main() {}
