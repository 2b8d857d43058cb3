//! Opaque page cursors and the page arithmetic shared by every list endpoint.
//!
//! A cursor names a keyset position plus the order and direction that produced it, so a
//! cursor reused with another `order` is refused instead of returning a wrong page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::ports::{Order, Position};

/// Default and maximum page sizes of the Managed Agents lists.
pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// Direction a cursor walks in, relative to the request's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    #[serde(rename = "n")]
    Next,
    #[serde(rename = "p")]
    Prev,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CursorBody {
    /// order: "a" | "d"
    o: String,
    d: Direction,
    t: i64,
    i: String,
}

/// A decoded cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    pub direction: Direction,
    pub position: Position,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let body = CursorBody {
            o: if self.order == Order::Asc { "a" } else { "d" }.into(),
            d: self.direction,
            t: self.position.created_at,
            i: self.position.id.clone(),
        };
        let json = serde_json::to_vec(&body).expect("cursor serialises");
        format!("page_{}", URL_SAFE_NO_PAD.encode(json))
    }

    pub fn decode(raw: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::invalid_code("invalid_page", format!("`page` cursor `{raw}` is not valid"));
        let b64 = raw.strip_prefix("page_").ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad())?;
        let body: CursorBody = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let order = match body.o.as_str() {
            "a" => Order::Asc,
            "d" => Order::Desc,
            _ => return Err(bad()),
        };
        Ok(Cursor { order, direction: body.d, position: Position { created_at: body.t, id: body.i } })
    }
}

/// A validated page request.
#[derive(Clone, Debug)]
pub struct PageRequest {
    pub limit: u32,
    pub order: Order,
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// Checks `limit` bounds and that a cursor agrees with the requested order.
    pub fn new(limit: Option<i64>, order: Order, page: Option<&str>, max: u32) -> Result<Self, DomainError> {
        let limit = match limit {
            None => DEFAULT_LIMIT.min(max),
            Some(l) if l >= 1 && l <= i64::from(max) => l as u32,
            Some(l) => {
                return Err(DomainError::invalid(format!("`limit` must be between 1 and {max}, got {l}")));
            }
        };
        let cursor = match page.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let c = Cursor::decode(p)?;
                if c.order != order {
                    return Err(DomainError::invalid_code(
                        "invalid_page",
                        "`page` cursor was issued for a different `order`",
                    ));
                }
                Some(c)
            }
        };
        Ok(PageRequest { limit, order, cursor })
    }

    /// The order and starting position the store should read in, and whether the rows
    /// it returns must be reversed (walking backwards).
    pub fn store_order(&self) -> (Order, Option<Position>, bool) {
        match &self.cursor {
            None => (self.order, None, false),
            Some(c) if c.direction == Direction::Next => (self.order, Some(c.position.clone()), false),
            Some(c) => (self.order.reverse(), Some(c.position.clone()), true),
        }
    }

    /// Builds the page from rows read with `limit + 1` (the extra row says "more").
    pub fn finish<T>(&self, mut rows: Vec<T>, position: impl Fn(&T) -> Position) -> Page<T> {
        let (_, _, reversed) = self.store_order();
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        if reversed {
            rows.reverse();
        }
        let cursor = |direction, p: Position| Cursor { order: self.order, direction, position: p }.encode();
        let first = rows.first().map(&position);
        let last = rows.last().map(&position);
        let (has_next, has_prev) = match (&self.cursor, reversed) {
            (None, _) => (more, false),
            (Some(_), false) => (more, true),
            (Some(_), true) => (true, more),
        };
        Page {
            next_page: if has_next { last.map(|p| cursor(Direction::Next, p)) } else { None },
            prev_page: if has_prev { first.map(|p| cursor(Direction::Prev, p)) } else { None },
            data: rows,
        }
    }
}

/// A page with both cursors; single-direction lists drop `prev_page`.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_page: Option<String>,
    pub prev_page: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { data: self.data.into_iter().map(f).collect(), next_page: self.next_page, prev_page: self.prev_page }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cursor_from_another_order_is_refused() {
        let c = Cursor { order: Order::Asc, direction: Direction::Next, position: Position { created_at: 1, id: "x".into() } };
        assert!(PageRequest::new(None, Order::Desc, Some(&c.encode()), MAX_LIMIT).is_err());
        assert!(PageRequest::new(None, Order::Asc, Some(&c.encode()), MAX_LIMIT).is_ok());
        assert!(PageRequest::new(None, Order::Asc, Some("page_garbage"), MAX_LIMIT).is_err());
        assert!(PageRequest::new(Some(101), Order::Asc, None, MAX_LIMIT).is_err());
        assert!(PageRequest::new(Some(0), Order::Asc, None, MAX_LIMIT).is_err());
    }

    /// Simulates a store over `n` rows and walks forward then backward with the cursors.
    fn read(rows: &[i64], order: Order, after: Option<&Position>, limit: usize) -> Vec<i64> {
        let mut sorted: Vec<i64> = rows.to_vec();
        sorted.sort();
        if order == Order::Desc {
            sorted.reverse();
        }
        sorted
            .into_iter()
            .filter(|r| match after {
                None => true,
                Some(p) => if order == Order::Asc { *r > p.created_at } else { *r < p.created_at },
            })
            .take(limit)
            .collect()
    }

    fn pos(r: &i64) -> Position {
        Position { created_at: *r, id: r.to_string() }
    }

    proptest! {
        #[test]
        fn walking_pages_forward_and_back_visits_every_row_once(n in 0usize..40, limit in 1u32..7, asc in any::<bool>()) {
            let rows: Vec<i64> = (0..n as i64).collect();
            let order = if asc { Order::Asc } else { Order::Desc };
            let mut seen = Vec::new();
            let mut pages = Vec::new();
            let mut page: Option<String> = None;
            loop {
                let req = PageRequest::new(Some(limit as i64), order, page.as_deref(), MAX_LIMIT).unwrap();
                let (o, after, _) = req.store_order();
                let got = req.finish(read(&rows, o, after.as_ref(), limit as usize + 1), pos);
                seen.extend(got.data.iter().copied());
                pages.push(got.data.clone());
                match got.next_page { Some(n) => page = Some(n), None => { break; } }
                if let Some(p) = &got.prev_page {
                    // walking back from this page yields the previous page exactly
                    let back = PageRequest::new(Some(limit as i64), order, Some(p), MAX_LIMIT).unwrap();
                    let (o, after, _) = back.store_order();
                    let prev = back.finish(read(&rows, o, after.as_ref(), limit as usize + 1), pos);
                    prop_assert_eq!(&prev.data, &pages[pages.len() - 2]);
                }
            }
            let mut expected = rows.clone();
            if !asc { expected.reverse(); }
            prop_assert_eq!(seen, expected);
        }
    }
}
