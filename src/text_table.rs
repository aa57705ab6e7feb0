//! Plain-text tables for terminals (`proxyctl status`, `proxyctl top`): columns as wide as
//! their widest cell, two spaces apart, numbers right-aligned. No cell holds two spaces in a
//! row, so a script can split a row on runs of two or more.

pub struct Table {
    headers: Vec<&'static str>,
    /// Right-aligned (numeric) columns.
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named `headers`; a name starting with '>' is right-aligned (the '>' is not
    /// shown).
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            headers: headers.iter().map(|h| h.trim_start_matches('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for r in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                let w = width.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(c.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(c);
                } else {
                    line.push_str(c);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut t = Table::new(&["NAME", ">N", "STATE"]);
        t.row(vec![
            "app".into(),
            "12345".into(),
            "down (health check)".into(),
        ]);
        t.row(vec!["a-long-name".into(), "7".into(), "up".into()]);
        assert_eq!(
            t.render(),
            "NAME             N  STATE\napp          12345  down (health check)\na-long-name      7  up\n"
        );
    }
}
