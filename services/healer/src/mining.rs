//! Online log-template mining: the fallback for output formats the healer has no parser for.
//!
//! Messages arrive one at a time; each is assigned a *template* (the message with its variable
//! parts shown as `<*>`) and the template's id. There is one configuration for every input: the
//! constants below were chosen once, never per log source.
//!
//! # Algorithm
//!
//! The miner is a descendant of Drain (He et al., ICWS 2017): messages are split into
//! whitespace-separated tokens and clustered with messages of the same token count by
//! position-wise similarity. It differs where Drain's fixed similarity threshold mixes two
//! questions, "is this token a value?" and "is this a different event?", and in its search:
//! Drain only compares messages that also share their leading tokens, so a host or program
//! name in first position splits one event into many; here a new message is compared with every
//! shape of its length. That is affordable because only masked sequences never seen before are
//! searched at all (see the cache below); the rest cost one hash lookup.
//!
//! 1. **Masking** (`classify`). A token is a value when it carries no letters once its
//!    digit-bearing runs are replaced by `<*>` (numbers, IPs, `host:port`, times, ids, hex), or
//!    when it is a path, URL, long hex blob or IPv6/MAC address. A token that keeps letters keeps
//!    them: `uid=0` becomes `uid=<*>`, `open(3)` becomes `open(<*>)`. A word with a single
//!    trailing digit (`eth0`, `ssh2`, `IPV6`) names a thing rather than a value and stays a
//!    constant. A month or weekday name next to a value, and a unit after one (`12 KB`), are part
//!    of that value. Runs of consecutive values collapse into one `<*>` (and runs of one masked
//!    word into one, `blk_<*> blk_<*>` into `blk_<*>`), so lists of any length look alike. A name
//!    prefix of a value stays, as a person writes the template: `blk_-1608` is `blk_<*>`,
//!    `part-00296` is `part-<*>`.
//! 2. **Joining** (`place`). A message joins the most similar *shape* (a same-length cluster)
//!    that has no position where both hold *different constants*; positions where one side is a
//!    value and the other a constant ("soft" differences) may make up at most `1 - THETA` of the
//!    positions compared. Two different words at one position are therefore never merged on
//!    similarity alone: `VM Started` and `VM Stopped` are different events.
//! 3. **Cardinality** (also `place`). A word position *is* variable (user names, host names,
//!    job names) when at least `DISTINCT` shapes that agree everywhere else each hold a different
//!    word there. Those shapes then merge into one whose position is `<*>`. Two or three
//!    alternatives stay apart: they are an enumeration (states, verbs), not a value.
//! 4. **Templates across lengths** (`link_skeleton`, `link_spans`). A value can span several
//!    tokens (`5 KB`, a date, a list). Shapes of different lengths belong to one template when
//!    their constant tokens are identical in order, or when the `<*>`s of one cover one or more
//!    tokens each of the other, at most one of them a word.
//!
//! # Invariants
//!
//! - Identical messages after masking always get the same template: a cache maps each masked
//!   token sequence to the shape it was placed in.
//! - Templates only generalise: a constant may become `<*>`, never the reverse, and templates
//!   only merge, never split.
//! - Ids are stable: an id, once returned, always names the template its message belongs to.
//!   When templates merge, the oldest id survives and the others become aliases of it, so
//!   [`Miner::template`] still answers for them; [`Miner::canonical`] resolves an alias.
//!
//! Memory grows with the number of distinct words, masked messages and templates, not with the
//! number of messages. The cache stops growing at `SEEN_LIMIT` entries; masked sequences first
//! seen after that are searched for each time they come (they still join a template covering
//! them, but the first invariant is then only kept for the sequences cached).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Largest share of compared positions that may differ softly (a value against a constant) for a
/// message to join a shape: at least `THETA` of them must be equal constants.
const THETA: f64 = 0.65;
/// Distinct words seen at one position, all else equal, that make the position a variable.
const DISTINCT: usize = 5;
/// Constants the shapes must share besides the varying position before the cardinality rule
/// applies, so short messages (`removing x`, `Link ok`) are not merged by their one common word.
const MIN_SHARED: usize = 3;
/// Constant tokens a `<*>` may cover when it spans several tokens: a value that happened to be a
/// word (`ns.example.com [10.0.0.1]` against `[10.0.0.1]`), never a phrase (`invalid user x`).
const SPANNED_WORDS: usize = 1;
/// Entries of the masked-sequence cache kept at most.
const SEEN_LIMIT: usize = 1 << 20;
/// Shapes a new masked sequence is compared with at most, per search: the newest ones. Real logs
/// stay far below it (a Loghub-2k sample has a few dozen shapes of one length); it bounds the cost
/// of a stream whose every message is new. At 2048 such a stream (random text) cost 15x more per
/// byte at 1 MiB than at 64 KiB, before the bound was reached; at 128, 3x at 8 MiB.
const MAX_SCAN: usize = 128;

/// Token id of a value (`<*>`). Word ids start at 1.
const WILD: u32 = 0;
const WILD_TEXT: &str = "<*>";

/// Template id and current template text of every line, in input order: a fresh [`Miner`] fed
/// all `lines`, with ids resolved after the last line (so lines whose templates merged later
/// share the surviving id).
pub fn mine<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<(usize, String)> {
    let mut miner = Miner::new();
    let ids: Vec<usize> = lines.into_iter().map(|line| miner.add(line)).collect();
    ids.into_iter()
        .map(|id| {
            let id = miner.canonical(id);
            (id, miner.template(id).to_owned())
        })
        .collect()
}

/// Online template miner. Feed messages one by one with [`Miner::add`]; each gets a template id.
#[derive(Debug, Default)]
pub struct Miner {
    vocab: Vocab,
    /// Masked token sequence → the shape it was placed in.
    seen: HashMap<Box<[u32]>, u32, Fx>,
    /// Token count → live shapes of that length.
    by_len: HashMap<u32, Vec<u32>, Fx>,
    /// Constant tokens in order → a shape that had them.
    skeletons: HashMap<Box<[u32]>, u32, Fx>,
    /// Shapes holding a `<*>`: the candidates for a value spanning several tokens.
    spanning: Vec<u32>,
    shapes: Vec<Shape>,
    templates: usize,
    scratch: Vec<u32>,
}

/// A cluster of same-length messages; shape ids double as template ids.
#[derive(Debug)]
struct Shape {
    tokens: Vec<u32>,
    /// Plain constants among `tokens`.
    consts: usize,
    /// Union-find over templates: the template's id when `parent == own id`.
    parent: u32,
    /// False once merged into another shape of the same length.
    live: bool,
    spanning: bool,
    /// For a template root: the member shape whose rendering is the template text, and the text.
    lead: u32,
    text: String,
}

impl Miner {
    /// The one default configuration.
    pub fn new() -> Miner {
        Miner::default()
    }

    /// Number of distinct templates (merged templates count once).
    pub fn len(&self) -> usize {
        self.templates
    }

    pub fn is_empty(&self) -> bool {
        self.templates == 0
    }

    /// The id that now names the template of `id`: `id` itself unless its template merged into
    /// an older one. Panics if `id` was not returned by this miner.
    pub fn canonical(&self, id: usize) -> usize {
        let mut id = id;
        while self.shapes[id].parent as usize != id {
            id = self.shapes[id].parent as usize;
        }
        id
    }

    /// Current template text of `id` (or of the template it merged into), values as `<*>`.
    /// Panics if `id` was not returned by this miner.
    pub fn template(&self, id: usize) -> &str {
        &self.shapes[self.canonical(id)].text
    }

    /// Adds one message; returns the id of the template it joined.
    pub fn add(&mut self, message: &str) -> usize {
        let mut tokens = std::mem::take(&mut self.scratch);
        tokens.clear();
        self.vocab.tokenize(message, &mut tokens);
        let shape = match self.seen.get(tokens.as_slice()) {
            Some(&shape) => shape,
            None => {
                let shape = self.place(&tokens);
                if self.seen.len() < SEEN_LIMIT {
                    self.seen.insert(tokens.as_slice().into(), shape);
                }
                shape
            }
        };
        self.scratch = tokens;
        self.find(shape) as usize
    }

    /// Root of `x`'s template, halving the path on the way.
    fn find(&mut self, mut x: u32) -> u32 {
        while self.shapes[x as usize].parent != x {
            let grand = self.shapes[self.shapes[x as usize].parent as usize].parent;
            self.shapes[x as usize].parent = grand;
            x = grand;
        }
        x
    }

    /// Finds or creates the shape of a masked message not seen before.
    fn place(&mut self, msg: &[u32]) -> u32 {
        let n = msg.len();
        let has_const = msg.iter().any(|&t| self.vocab.is_const(t));
        let mut best: Option<(u32, usize, usize)> = None; // (shape, equal constants, free positions)
        let mut siblings: Vec<(usize, u32)> = Vec::new(); // (differing position, shape)
        let same_length = self.by_len.get(&(n as u32)).map(Vec::as_slice).unwrap_or_default();
        for &s in &same_length[same_length.len().saturating_sub(MAX_SCAN)..] {
            let c = self.vocab.compare(&self.shapes[s as usize].tokens, msg);
            match c.hard {
                0 => {
                    let joins = if c.eq == 0 {
                        c.soft == 0 && !has_const
                    } else {
                        c.eq as f64 >= THETA * (c.eq + c.soft) as f64
                    };
                    if joins && best.is_none_or(|(_, eq, free)| (c.eq, c.free) > (eq, free)) {
                        best = Some((s, c.eq, c.free));
                    }
                }
                1 if c.eq >= MIN_SHARED && 2 * c.eq >= n - c.free => siblings.push((c.hard_at, s)),
                _ => {}
            }
        }
        if let Some((s, _, _)) = best {
            self.generalise(s, msg);
            return s;
        }
        if let Some(s) = self.merge_siblings(&mut siblings, msg) {
            return s;
        }
        self.new_shape(msg)
    }

    /// The cardinality rule: if at least [`DISTINCT`] words were seen at one position by shapes
    /// otherwise like `msg`, they all merge into the oldest, with that position a variable.
    fn merge_siblings(&mut self, siblings: &mut [(usize, u32)], msg: &[u32]) -> Option<u32> {
        if siblings.len() + 1 < DISTINCT {
            return None;
        }
        siblings.sort_unstable();
        for group in siblings.chunk_by(|a, b| a.0 == b.0) {
            let at = group[0].0;
            let mut words: Vec<u32> =
                group.iter().map(|&(_, s)| self.shapes[s as usize].tokens[at]).collect();
            words.push(msg[at]);
            words.sort_unstable();
            words.dedup();
            if words.len() < DISTINCT {
                continue;
            }
            // groups are sorted by shape id within a position, so the first is the oldest
            let survivor = group[0].1;
            for &(_, other) in &group[1..] {
                self.absorb(survivor, other);
            }
            let mut tokens = std::mem::take(&mut self.shapes[survivor as usize].tokens);
            for (t, &m) in tokens.iter_mut().zip(msg) {
                *t = self.vocab.generalise(*t, m);
            }
            self.set_tokens(survivor, tokens);
            self.after_change(survivor);
            return Some(survivor);
        }
        None
    }

    fn new_shape(&mut self, msg: &[u32]) -> u32 {
        let id = self.shapes.len() as u32;
        let text = self.vocab.render(msg);
        self.shapes.push(Shape {
            tokens: msg.to_vec(),
            consts: self.vocab.consts(msg),
            parent: id,
            live: true,
            spanning: false,
            lead: id,
            text,
        });
        self.templates += 1;
        self.by_len.entry(msg.len() as u32).or_default().push(id);
        self.link_spans(id);
        self.link_skeleton(id);
        self.mark_spanning(id);
        id
    }

    /// Generalises shape `s` to also cover `msg`.
    fn generalise(&mut self, s: u32, msg: &[u32]) {
        let mut tokens = std::mem::take(&mut self.shapes[s as usize].tokens);
        let mut changed = false;
        for (t, &m) in tokens.iter_mut().zip(msg) {
            let g = self.vocab.generalise(*t, m);
            changed |= g != *t;
            *t = g;
        }
        if changed {
            self.set_tokens(s, tokens);
            self.after_change(s);
        } else {
            self.shapes[s as usize].tokens = tokens;
        }
    }

    /// Merges live shape `other` into live shape `survivor` of the same length.
    fn absorb(&mut self, survivor: u32, other: u32) {
        let tokens = std::mem::take(&mut self.shapes[other as usize].tokens);
        if let Some(list) = self.by_len.get_mut(&(tokens.len() as u32)) {
            list.retain(|&s| s != other);
        }
        let mut merged = std::mem::take(&mut self.shapes[survivor as usize].tokens);
        for (t, &o) in merged.iter_mut().zip(&tokens) {
            *t = self.vocab.generalise(*t, o);
        }
        self.set_tokens(survivor, merged);
        // a dead shape only forwards: cached sequences still resolve through its parent link
        self.shapes[other as usize].live = false;
        self.union(survivor, other, None);
        let root = self.find(survivor);
        if !self.shapes[self.shapes[root as usize].lead as usize].live {
            self.set_lead(root, survivor);
        }
    }

    /// After shape `s` generalised: shapes of its length that it now covers join it, its
    /// template text is refreshed, and it is linked across lengths again.
    fn after_change(&mut self, s: u32) {
        let n = self.shapes[s as usize].tokens.len() as u32;
        let covered: Vec<u32> = self
            .by_len
            .get(&n)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|&o| {
                o != s && self.vocab.covers(&self.shapes[s as usize].tokens, &self.shapes[o as usize].tokens)
            })
            .collect();
        for o in covered {
            self.absorb(s, o);
        }
        let root = self.find(s);
        let lead = self.shapes[root as usize].lead;
        if self.shapes[lead as usize].live {
            self.shapes[root as usize].text = self.vocab.render(&self.shapes[lead as usize].tokens);
        } else {
            self.set_lead(root, s);
        }
        self.link_spans(s);
        self.link_skeleton(s);
        self.mark_spanning(s);
    }

    fn set_tokens(&mut self, s: u32, tokens: Vec<u32>) {
        self.shapes[s as usize].consts = self.vocab.consts(&tokens);
        self.shapes[s as usize].tokens = tokens;
    }

    fn set_lead(&mut self, root: u32, lead: u32) {
        self.shapes[root as usize].lead = lead;
        self.shapes[root as usize].text = self.vocab.render(&self.shapes[lead as usize].tokens);
    }

    /// Joins the templates of `a` and `b`; the older id survives. `lead`: a shape whose text
    /// should become the template's (the more general one), if not the survivor's own.
    fn union(&mut self, a: u32, b: u32, lead: Option<u32>) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (keep, gone) = (ra.min(rb), ra.max(rb));
            self.shapes[gone as usize].parent = keep;
            self.templates -= 1;
        }
        if let Some(lead) = lead {
            let root = self.find(a);
            self.set_lead(root, lead);
        }
    }

    fn mark_spanning(&mut self, s: u32) {
        let shape = &mut self.shapes[s as usize];
        if !shape.spanning && shape.tokens.contains(&WILD) {
            shape.spanning = true;
            if self.spanning.len() == self.spanning.capacity() {
                // drop merged shapes before the list grows
                let shapes = &self.shapes;
                self.spanning.retain(|&o| shapes[o as usize].live);
            }
            self.spanning.push(s);
        }
    }

    /// Same constants in the same order, wherever the values are: one template.
    fn link_skeleton(&mut self, s: u32) {
        let skeleton: Box<[u32]> =
            self.shapes[s as usize].tokens.iter().copied().filter(|&t| t != WILD).collect();
        if skeleton.is_empty() {
            return;
        }
        match self.skeletons.get(&skeleton) {
            Some(&other) => self.union(other, s, None),
            None => {
                self.skeletons.insert(skeleton, s);
            }
        }
    }

    /// A value spanning several tokens: joins `s` to a template of another length when each `<*>`
    /// of the shorter covers one or more tokens of the longer, all else equal, and at most
    /// [`SPANNED_WORDS`] of the covered tokens are constants.
    fn link_spans(&mut self, s: u32) {
        let root = self.find(s);
        let me = &self.shapes[s as usize];
        let mine_wild = me.tokens.contains(&WILD);
        let mut found = None;
        for &o in self.spanning.iter().rev().take(MAX_SCAN) {
            let other = &self.shapes[o as usize];
            if !other.live || other.tokens.len() == me.tokens.len() {
                continue;
            }
            let (pattern, text, mine_general) = if other.tokens.len() < me.tokens.len() {
                (other, me, false)
            } else if mine_wild {
                (me, other, true)
            } else {
                continue;
            };
            if pattern.consts == 0
                || text.consts < pattern.consts
                || text.consts - pattern.consts > SPANNED_WORDS
            {
                continue;
            }
            if self.find_ro(o) != root && self.vocab.spans(&pattern.tokens, &text.tokens) {
                found = Some((o, mine_general));
                break;
            }
        }
        if let Some((o, mine_general)) = found {
            self.union(o, s, mine_general.then_some(s));
        }
    }

    /// [`Miner::find`] without path compression, for use under a shared borrow.
    fn find_ro(&self, x: u32) -> u32 {
        self.canonical(x as usize) as u32
    }
}

/// How a template's tokens relate to a message's, position by position.
#[derive(Debug, Default)]
struct Comparison {
    /// Same constant on both sides.
    eq: usize,
    /// The template's `<*>` (or pattern such as `uid=<*>`) covers the message token.
    free: usize,
    /// A value against a constant.
    soft: usize,
    /// Two different constants; `hard_at` is the last such position.
    hard: usize,
    hard_at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Eq,
    Free,
    Soft,
    Hard,
}

/// The interned words of all messages, with what the miner needs to know about each.
#[derive(Debug)]
struct Vocab {
    ids: HashMap<Box<str>, u32, Fx>,
    names: Vec<Box<str>>,
    props: Vec<Props>,
    buf: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Props {
    /// Id of the `key=` (or `key:`, `key....`) prefix, 0 if none: `user=root` and `user=bob`
    /// generalise to `user=<*>`, not to `<*>`.
    key: u32,
    /// Holds a `<*>` (a masked word such as `uid=<*>`): covers the words it matches.
    pattern: bool,
    kind: Kind,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[default]
    Word,
    Month,
    Weekday,
    Unit,
}

impl Default for Vocab {
    fn default() -> Vocab {
        Vocab {
            ids: HashMap::default(),
            names: vec![WILD_TEXT.into()],
            props: vec![Props { key: 0, pattern: true, kind: Kind::Word }],
            buf: String::new(),
        }
    }
}

impl Vocab {
    fn intern(&mut self, word: &str) -> u32 {
        if let Some(&id) = self.ids.get(word) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(word.into());
        self.ids.insert(word.into(), id);
        self.props.push(Props::default());
        let key = match key_len(word.as_bytes()) {
            Some(k) if k < word.len() => self.intern(&word[..k]),
            Some(_) => id, // `ruser=` with an empty value is its own key
            None => 0,
        };
        self.props[id as usize] = Props { key, pattern: word.contains(WILD_TEXT), kind: kind(word) };
        id
    }

    /// A plain constant: neither `<*>` nor a pattern.
    fn is_const(&self, t: u32) -> bool {
        !self.props[t as usize].pattern
    }

    fn consts(&self, tokens: &[u32]) -> usize {
        tokens.iter().filter(|&&t| self.is_const(t)).count()
    }

    /// Splits `message` into masked token ids (see the module documentation).
    fn tokenize(&mut self, message: &str, out: &mut Vec<u32>) {
        let mut dated = false;
        for token in message.split_ascii_whitespace() {
            let id = self.classify(token);
            dated |= self.props[id as usize].kind != Kind::Word;
            out.push(id);
        }
        if dated {
            // month and weekday names next to a value, and units after one, belong to the value
            for i in 0..out.len() {
                let prev_wild = i > 0 && out[i - 1] == WILD;
                let next = out.get(i + 1).copied();
                let next_wild = next == Some(WILD);
                let wild = match self.props[out[i] as usize].kind {
                    Kind::Word => false,
                    Kind::Month => prev_wild || next_wild,
                    Kind::Weekday => {
                        next_wild || next.is_some_and(|t| self.props[t as usize].kind == Kind::Month)
                    }
                    Kind::Unit => prev_wild,
                };
                if wild {
                    out[i] = WILD;
                }
            }
        }
        // a list of values, or of masked words of one shape (`blk_<*> blk_<*> ...`), is one value
        let props = &self.props;
        out.dedup_by(|a, b| *a == *b && props[*a as usize].pattern);
    }

    /// A path is a value; an absolute one whose file name is a name with a value in it keeps
    /// that name, as a person writes it: `/data/current/blk_-123` is `/<*>/blk_<*>`.
    fn path(&mut self, token: &str) -> u32 {
        let Some((dir, name)) = token.rsplit_once('/') else { return WILD };
        if !dir.starts_with('/') || dir.contains("://") || !name.bytes().any(|c| c.is_ascii_digit()) {
            return WILD;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        mask_runs(name, &mut buf);
        let id = if buf.contains(WILD_TEXT) && buf.bytes().any(|c| c.is_ascii_alphabetic()) {
            let whole = format!("/{WILD_TEXT}/{buf}");
            self.intern(&whole)
        } else {
            WILD
        };
        self.buf = buf;
        id
    }

    fn classify(&mut self, token: &str) -> u32 {
        let b = token.as_bytes();
        let (mut digits, mut letters, mut slashes) = (0usize, 0usize, 0usize);
        for &c in b {
            match c {
                b'0'..=b'9' => digits += 1,
                b'a'..=b'z' | b'A'..=b'Z' => letters += 1,
                b'/' => slashes += 1,
                _ => {}
            }
        }
        if slashes > 0 && is_path(b) {
            return self.path(token);
        }
        if digits == 0 {
            return if is_hex_blob(b) { WILD } else { self.intern(token) };
        }
        if letters == 0 || is_hex_address(b) {
            return WILD;
        }
        if is_word_digit(b) {
            return self.intern(token);
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        mask_runs(token, &mut buf);
        let id = if buf.bytes().any(|c| c.is_ascii_alphabetic()) { self.intern(&buf) } else { WILD };
        self.buf = buf;
        id
    }

    /// How template token `t` relates to message token `m`.
    fn rel(&self, t: u32, m: u32) -> Rel {
        if t == m {
            return if self.is_const(t) { Rel::Eq } else { Rel::Free };
        }
        if t == WILD || (!self.is_const(t) && glob(&self.names[t as usize], &self.names[m as usize])) {
            return Rel::Free;
        }
        if self.is_const(t) && self.is_const(m) { Rel::Hard } else { Rel::Soft }
    }

    fn compare(&self, template: &[u32], msg: &[u32]) -> Comparison {
        let mut c = Comparison::default();
        for (i, (&t, &m)) in template.iter().zip(msg).enumerate() {
            match self.rel(t, m) {
                Rel::Eq => c.eq += 1,
                Rel::Free => c.free += 1,
                Rel::Soft => c.soft += 1,
                Rel::Hard => {
                    c.hard += 1;
                    c.hard_at = i;
                    if c.hard > 1 {
                        break; // neither joins nor is a sibling
                    }
                }
            }
        }
        c
    }

    /// Whether every token of `general` is equal to or covers the token of `specific`.
    fn covers(&self, general: &[u32], specific: &[u32]) -> bool {
        general.iter().zip(specific).all(|(&g, &s)| matches!(self.rel(g, s), Rel::Eq | Rel::Free))
    }

    /// The most specific token covering both `t` and `m`: `t` if it already does, the message's
    /// pattern if that covers `t`, `key=<*>` for two values of one key, else `<*>`.
    fn generalise(&mut self, t: u32, m: u32) -> u32 {
        if matches!(self.rel(t, m), Rel::Eq | Rel::Free) {
            return t;
        }
        if !self.is_const(m) && glob(&self.names[m as usize], &self.names[t as usize]) {
            return m;
        }
        let key = self.props[t as usize].key;
        if key != 0 && key == self.props[m as usize].key {
            let keyed = format!("{}{WILD_TEXT}", self.names[key as usize]);
            return self.intern(&keyed);
        }
        WILD
    }

    /// Token-level glob: each `<*>` of `pattern` stands for one or more tokens of `text`; every
    /// other token must be equal or covered.
    fn spans(&self, pattern: &[u32], text: &[u32]) -> bool {
        let matches = |p: u32, t: u32| matches!(self.rel(p, t), Rel::Eq | Rel::Free);
        // cheap rejections first: a constant at either end must match the other's end
        let ends = |p: Option<&u32>, t: Option<&u32>| match (p, t) {
            (Some(&p), Some(&t)) => p == WILD || matches(p, t),
            _ => false,
        };
        if !ends(pattern.first(), text.first()) || !ends(pattern.last(), text.last()) {
            return false;
        }
        let (mut p, mut t) = (0usize, 0usize);
        // (position of the last `<*>` in pattern, text position it would extend to next)
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            if pattern.get(p) == Some(&WILD) {
                star = Some((p, t + 1));
                p += 1;
                t += 1;
            } else if p < pattern.len() && matches(pattern[p], text[t]) {
                p += 1;
                t += 1;
            } else if let Some((sp, st)) = star {
                // let the last `<*>` cover one more token and retry from there
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p == pattern.len()
    }

    fn render(&self, tokens: &[u32]) -> String {
        let mut text = String::new();
        for (i, &t) in tokens.iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(&self.names[t as usize]);
        }
        text
    }
}

fn kind(word: &str) -> Kind {
    const MONTHS: &[&str] = &[
        "jan",
        "feb",
        "mar",
        "apr",
        "may",
        "jun",
        "jul",
        "aug",
        "sep",
        "oct",
        "nov",
        "dec",
        "january",
        "february",
        "march",
        "april",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    const WEEKDAYS: &[&str] = &[
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    // sizes and durations that follow a number
    const UNITS: &[&str] = &[
        "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib", "k", "m", "g", "ms", "us", "ns", "s", "sec",
    ];
    let bare = word.trim_end_matches([',', '.', ')', ']', ';']);
    if bare.len() > 9 {
        return Kind::Word;
    }
    let lower = bare.to_ascii_lowercase();
    if MONTHS.contains(&lower.as_str()) {
        Kind::Month
    } else if WEEKDAYS.contains(&lower.as_str()) {
        Kind::Weekday
    } else if UNITS.contains(&lower.as_str()) {
        Kind::Unit
    } else {
        Kind::Word
    }
}

/// Replaces each run of word characters that holds a digit (or is a long hex blob) with `<*>`,
/// keeping the rest: `uid=0,` → `uid=<*>,`, `open(3)` → `open(<*>)`. A run starts at a letter,
/// digit or `_` and continues over `.` and `-` only when they are followed by one, so
/// `10.0.0.1:80` is two runs and `flag.........1` keeps its dot leader.
fn mask_runs(token: &str, out: &mut String) {
    let b = token.as_bytes();
    let starts = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    // a minus sign before digits, not after a word (`vCores:-1`, not `x-1`), is the value's
    let sign = |i: usize| {
        b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit) && (i == 0 || !starts(b[i - 1]))
    };
    let mut i = 0;
    while i < b.len() {
        if !starts(b[i]) && !sign(i) {
            let mut j = i + 1;
            while j < b.len() && !starts(b[j]) && !sign(j) {
                j += 1;
            }
            out.push_str(&token[i..j]);
            i = j;
            continue;
        }
        let mut j = i + 1;
        while j < b.len()
            && (starts(b[j]) || (matches!(b[j], b'.' | b'-') && b.get(j + 1).is_some_and(|&c| starts(c))))
        {
            j += 1;
        }
        let run = &b[i..j];
        if is_name_with_digit(run) {
            out.push_str(&token[i..j]);
        } else if run.iter().any(u8::is_ascii_digit) || is_hex_blob(run) {
            // a name prefix before the value stays, as a person writes it: `blk_<*>`, `part-<*>`
            out.push_str(&token[i..i + name_prefix(run)]);
            out.push_str(WILD_TEXT);
        } else {
            out.push_str(&token[i..j]);
        }
        i = j;
    }
}

/// Length of a name prefix of a value run, 0 when the run does not start with one: words of
/// letters ending in `_` or `.` (the first of two letters or more) before the part with the
/// digits (`blk_-1608`, `core.1234`, `Thunderbird_C5`), or a word and `-` before a number
/// (`part-00296`). A word and `-` before more words is a host name (`msra-sa-41`): all value.
fn name_prefix(run: &[u8]) -> usize {
    let mut at = 0;
    loop {
        let letters = run[at..].iter().take_while(|c| c.is_ascii_alphabetic()).count();
        if letters == 0 || at == 0 && letters < 2 {
            return at;
        }
        let next = at + letters + 1;
        match run.get(at + letters) {
            Some(b'-') => {
                let rest = &run[next..];
                let digits = rest.strip_prefix(b"-").unwrap_or(rest);
                let number = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
                return if number { next } else { at };
            }
            Some(b'_' | b'.') if run[next..].iter().any(u8::is_ascii_digit) => at = next,
            _ => return at,
        }
    }
}

/// An identifier with single digits inside it (`jk2_init`, `md5sum`, `x2go`): a name, not a
/// value. It starts with two letters or more and ends with a letter.
fn is_name_with_digit(run: &[u8]) -> bool {
    let (first, last) = (run.iter().take_while(|c| c.is_ascii_alphabetic()).count(), run.last());
    if first < 2 || !last.is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    // every run of digits is one digit long
    run.windows(2).all(|w| !(w[0].is_ascii_digit() && w[1].is_ascii_digit()))
        && run.iter().any(u8::is_ascii_digit)
}

/// Length of a `key=`, `key:` or `key....` prefix (separator included), if `b` starts with one.
/// Keys of `=` may hold digits after a letter (`r24=`); keys of `:` are words only, so
/// `host.example.com:80` and `10:41:02` have none.
fn key_len(b: &[u8]) -> Option<usize> {
    let start = b.iter().position(|c| c.is_ascii_alphanumeric() || *c == b'_')?;
    let key_word =
        |k: &[u8]| !k.is_empty() && k.iter().all(|c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'-'));
    for (i, &c) in b.iter().enumerate().skip(start) {
        let key = &b[start..i];
        match c {
            b'=' => {
                let ok = key.first().is_some_and(u8::is_ascii_alphabetic)
                    && key.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
                return ok.then_some(i + 1);
            }
            b':' => return key_word(key).then_some(i + 1),
            b'.' if b[i..].starts_with(b"...") => {
                return key_word(key).then(|| i + b[i..].iter().take_while(|&&c| c == b'.').count());
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.') => {}
            _ => return None,
        }
    }
    None
}

/// Eight or more hex digits and nothing else: a hash, address or id even without a digit.
fn is_hex_blob(b: &[u8]) -> bool {
    b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit)
}

/// An absolute or relative path, or a URL: `/var/log/x`, `./run`, `a/b/c`, `hdfs://host/x`.
/// A single inner slash (`Input/output`, `TCP/IP`) is not a path.
fn is_path(b: &[u8]) -> bool {
    let t = match b.first() {
        Some(b'(' | b'[' | b'"' | b'\'' | b'<') => &b[1..],
        _ => b,
    };
    t.first() == Some(&b'/')
        || t.starts_with(b"./")
        || t.starts_with(b"../")
        || t.starts_with(b"~/")
        || t.windows(3).any(|w| w == b"://")
        || t.iter().filter(|&&c| c == b'/').count() >= 2
}

/// IPv6 or MAC address: hex digits, dots and at least two colons, optionally bracketed.
fn is_hex_address(b: &[u8]) -> bool {
    let t = b.strip_prefix(b"(").or_else(|| b.strip_prefix(b"[")).unwrap_or(b);
    let t = t.strip_suffix(b",").unwrap_or(t);
    let t = t.strip_suffix(b")").or_else(|| t.strip_suffix(b"]")).unwrap_or(t);
    t.iter().filter(|&&c| c == b':').count() >= 2
        && t.iter().all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
}

/// A word with one trailing digit (`eth0`, `ssh2`, `IPV6`, `sda1`): names an interface,
/// protocol or device more often than it carries a value. Many of them at one position still
/// become a variable through the cardinality rule.
fn is_word_digit(b: &[u8]) -> bool {
    let t = match b.last() {
        Some(b',' | b'.' | b':' | b';') => &b[..b.len() - 1],
        _ => b,
    };
    t.len() >= 3 && t[t.len() - 1].is_ascii_digit() && t[..t.len() - 1].iter().all(u8::is_ascii_alphabetic)
}

/// Whether `text` matches `pattern`, each `<*>` of which stands for any (possibly empty) text.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split(WILD_TEXT);
    let Some(mut rest) = parts.next().and_then(|first| text.strip_prefix(first)) else { return false };
    let mut parts = parts.peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// FxHash (rustc's hasher): the keys here are short words and id sequences from our own
/// tokenizer, so a fast non-cryptographic hash is the right trade; SipHash would double the
/// cost of a cached message.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

type Fx = BuildHasherDefault<FxHasher>;

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // the multiply leaves the low bits weakest; hashbrown indexes buckets with them
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_keep_the_names_around_values() {
        let mut m = Miner::new();
        for (lines, want) in [
            (
                [
                    "jk2_init() Found child 6725 in scoreboard slot 10",
                    "jk2_init() Found child 6726 in scoreboard slot 8",
                ],
                "jk2_init() Found child <*> in scoreboard slot <*>",
            ),
            (
                [
                    "Deleting block blk_-16 file /mnt/data/current/blk_-16",
                    "Deleting block blk_75 file /mnt/data/current/subdir1/blk_75",
                ],
                "Deleting block blk_<*> file /<*>/blk_<*>",
            ),
            (
                ["headroom=<memory:0, vCores:-1>", "headroom=<memory:1024, vCores:-3>"],
                "headroom=<memory:<*>, vCores:<*>>",
            ),
            (
                ["Old: msra-sa-41/10.190.173.170:8030 now", "Old: msra-sa-39/10.190.173.172:8030 now"],
                "Old: <*> now",
            ),
            (["wrote part-00296 ok", "wrote part-00012 ok"], "wrote part-<*> ok"),
            (
                ["ask 10.0.0.1:50010 to delete blk_1 blk_2 blk_3", "ask 10.0.0.2:50010 to delete blk_4"],
                "ask <*> to delete blk_<*>",
            ),
        ] {
            let a = m.add(lines[0]);
            let b = m.add(lines[1]);
            assert_eq!(a, b, "{lines:?}");
            assert_eq!(m.template(a), want);
        }
    }

    #[test]
    fn same_shape_with_other_values_shares_a_template() {
        let mut m = Miner::new();
        let a = m.add("Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6");
        let b = m.add("Received block blk_7503483334202473044 of size 233217 from /10.250.19.102");
        assert_eq!(a, b);
        assert_eq!(m.template(a), "Received block blk_<*> of size <*> from <*>");
        let c = m.add("session opened for user root by (uid=0)");
        let d = m.add("session opened for user root by (uid=48)");
        assert_eq!(c, d);
        assert_eq!(m.template(c), "session opened for user root by (uid=<*>)");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn different_messages_get_different_templates() {
        let mut m = Miner::new();
        let started = m.add("[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Started (Lifecycle Event)");
        let stopped = m.add("[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Stopped (Lifecycle Event)");
        let running = m.add("running");
        let normal = m.add("normal");
        let ids = [started, stopped, running, normal];
        for (i, a) in ids.iter().enumerate() {
            assert!(ids[i + 1..].iter().all(|b| a != b), "{ids:?}");
        }
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn ids_stay_stable_as_a_template_generalises() {
        let mut m = Miner::new();
        let first = m.add("Failed password for root from 5.36.59.76 port 42393 ssh2");
        assert_eq!(m.template(first), "Failed password for root from <*> port <*> ssh2");
        // user names vary: once enough distinct ones were seen the position becomes a variable
        let mut ids = vec![first];
        for user in ["admin", "guest", "oracle", "test", "git", "nagios"] {
            ids.push(m.add(&format!("Failed password for {user} from 103.99.0.122 port 51359 ssh2")));
        }
        let last = *ids.last().expect("ids");
        assert_eq!(m.canonical(last), first, "the oldest id survives the merge");
        assert!(ids.iter().all(|&id| m.canonical(id) == first));
        assert_eq!(m.template(first), "Failed password for <*> from <*> port <*> ssh2");
        assert_eq!(m.add("Failed password for www from 1.2.3.4 port 1 ssh2"), first);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_few_alternatives_stay_apart() {
        let lines = [
            "Location icon should now be in state 'Active'",
            "Location icon should now be in state 'Inactive'",
            "Location icon should now be in state 'Active'",
        ];
        let mined = mine(lines);
        assert_eq!(mined[0].0, mined[2].0);
        assert_ne!(mined[0].0, mined[1].0);
    }

    #[test]
    fn values_spanning_several_tokens() {
        let lines = [
            "proxy.example.org:443 close, 0 bytes sent, 0 bytes received, lifetime 00:01",
            "proxy.example.org:443 close, 861480 bytes (841 KB) sent, 5464 bytes (5.33 KB) received, lifetime 01:45",
            "Block broadcast_9 stored as values in memory (estimated size 8.8 KB, free 14.0 KB)",
            "Block broadcast_0 stored as values in memory (estimated size 384.0 B, free 317.5 KB)",
            "Connection from 10.0.0.1 at Fri Jun 17 07:07:00 2005",
            "Connection from 10.0.0.2 at Mon Jul  4 17:00:00 2005",
            "Warning: we failed to resolve data source name an14 an15 an16",
            "Warning: we failed to resolve data source name an17",
        ];
        let mined = mine(lines);
        for pair in mined.chunks(2) {
            assert_eq!(pair[0].0, pair[1].0, "{pair:?}");
        }
        assert_eq!(mined[2].1, "Block broadcast_<*> stored as values in memory (estimated size <*> free <*>");
    }

    #[test]
    fn masking_keeps_the_constant_parts_of_a_token() {
        let mut v = Vocab::default();
        let render = |v: &mut Vocab, s: &str| {
            let mut out = Vec::new();
            v.tokenize(s, &mut out);
            v.render(&out)
        };
        assert_eq!(
            render(&mut v, "IOHibernatePollerOpen(0) uid=0, flg=0x1f"),
            "IOHibernatePollerOpen(<*>) uid=<*>, flg=<*>"
        );
        assert_eq!(render(&mut v, "via interface eth0 to 10.0.0.1:8080"), "via interface eth0 to <*>");
        assert_eq!(
            render(&mut v, "loading /usr/lib/x.so and ./run into 0xdeadbeef"),
            "loading <*> and <*> into <*>"
        );
        assert_eq!(
            render(&mut v, "icbi.........0 fe80::1:2 Input/output"),
            "icbi.........<*> <*> Input/output"
        );
        assert_eq!(render(&mut v, "took 12 ms at 2005-06-03-15.42.50.675872"), "took <*> at <*>");
    }

    #[test]
    fn glob_and_spans() {
        assert!(glob("uid=<*>", "uid=root"));
        assert!(glob("uid=<*>", "uid="));
        assert!(!glob("uid=<*>", "euid=0"));
        assert!(glob("a<*>b<*>c", "axxbyyc"));
        assert!(!glob("a<*>b<*>c", "axxbyy"));
        let mut v = Vocab::default();
        let (x, y, z) = (v.intern("x"), v.intern("y"), v.intern("z"));
        assert!(v.spans(&[x, WILD, z], &[x, y, y, z]));
        assert!(v.spans(&[x, WILD], &[x, y, z]));
        assert!(!v.spans(&[x, WILD, z], &[x, z]));
        assert!(!v.spans(&[x, WILD, z], &[x, y, y]));
    }

    #[test]
    fn identical_masked_messages_always_share_a_template() {
        let mut m = Miner::new();
        let lines = ["a 1 b", "a 2 b", "c d e", "a 3 b", "", "", "a b c d e f", "a 4 b"];
        let ids: Vec<usize> = lines.iter().map(|l| m.add(l)).collect();
        assert_eq!(ids[0], ids[1]);
        assert_eq!(ids[0], ids[3]);
        assert_eq!(ids[0], ids[7]);
        assert_eq!(ids[4], ids[5]);
        assert_eq!(m.template(ids[4]), "");
        assert!(!m.is_empty());
    }
}
