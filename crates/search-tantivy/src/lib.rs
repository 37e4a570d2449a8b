//! chatd's embedded search index.
//!
//! tantivy holds, for every message, the tokens of its normalised body (see
//! [`chatd_core::search::normalize`]): the runs of characters between spaces, each prefixed
//! by its chat's key, without positions or frequencies. A search scans its chat's range of
//! the term dictionary for the tokens each term can lie in (see [`tokens::pieces`]), unions
//! their postings and intersects across terms. Candidates are a superset of the answer: the
//! core verifies each against the body before returning it. (Indexes of 1- and 3-character
//! grams came before: they made every create cost its body's length in index terms, about a
//! third of chatd's CPU per create.)
//!
//! The index is fed by one [`Indexer`] thread from the store's change sequence, in commit
//! order. Each index commit records the sequence it covers as its payload, atomically with
//! the documents; after any crash the indexer resumes from there.
#![deny(unsafe_code)]

mod directory;
mod indexer;
mod tokens;

use std::path::Path;

use chatd_core::error::StoreResult;
use chatd_core::search::{CandidateIndex, Change, ChatKey, Keyword, Pass, normalize};
use chatd_core::{MessageNumber, StoreError};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{DocId, Index, IndexReader, IndexWriter, ReloadPolicy, SegmentReader, TantivyDocument, Term};
use tokens::{Piece, ScopedTokenizer};

pub use indexer::{Indexer, IndexerOptions, rebuild};

/// The fields of the schema.
#[derive(Debug, Clone, Copy)]
struct Fields {
    /// The message's store identity: edits delete by it.
    message: Field,
    number: Field,
    /// The body's tokens, scoped by chat (see [`tokens`]).
    tokens: Field,
}

/// The name of the `number` fast field.
const NUMBER: &str = "number";

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let tokens = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ScopedTokenizer::NAME)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let fields = Fields {
        message: b.add_i64_field("message", INDEXED),
        number: b.add_i64_field(NUMBER, FAST),
        tokens: b.add_text_field("scoped_tokens", tokens),
    };
    (b.build(), fields)
}

/// Maps tantivy's errors: a lock held by another process and I/O failures are outages.
fn map_err(e: tantivy::TantivyError) -> StoreError {
    match e {
        tantivy::TantivyError::LockFailure(..) => {
            StoreError::Unavailable(format!("the search index is in use by another process: {e}"))
        }
        tantivy::TantivyError::IoError(_) => StoreError::Unavailable(format!("search index I/O: {e}")),
        other => StoreError::internal(other),
    }
}

/// The index in a directory: one long-lived reader, a fresh searcher per query.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if missing.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        let directory = directory::SegmentFiles::open(dir).map_err(map_err)?;
        let index = match Index::open_or_create(directory.clone(), schema.clone()) {
            Err(tantivy::TantivyError::SchemaError(why)) => {
                // The index is derived data: one from another version of chatd is dropped
                // and rebuilt from the database by the indexer.
                tracing::warn!(%why, "the search index has another schema; recreating it");
                for entry in std::fs::read_dir(dir).map_err(StoreError::internal)?.flatten() {
                    std::fs::remove_file(entry.path()).map_err(StoreError::internal)?;
                }
                Index::create(directory, schema, tantivy::IndexSettings::default()).map_err(map_err)?
            }
            other => other.map_err(map_err)?,
        };
        index.tokenizers().register(ScopedTokenizer::NAME, ScopedTokenizer);
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(map_err)?;
        Ok(SearchIndex { index, reader, fields })
    }

    /// The change sequence the last commit covers (0 for a new index).
    pub fn indexed_seq(&self) -> StoreResult<i64> {
        let metas = self.index.load_metas().map_err(map_err)?;
        Ok(metas.payload.and_then(|p| p.parse().ok()).unwrap_or(0))
    }

    /// Takes the index's single writer (fails if another process holds it).
    fn writer(&self) -> StoreResult<IndexWriter> {
        self.index.writer_with_num_threads(1, 50_000_000).map_err(map_err)
    }

    /// Replaces a message's document with its newest state.
    fn apply(&self, writer: &IndexWriter, change: &Change) -> StoreResult<()> {
        let f = self.fields;
        if change.replaces {
            writer.delete_term(Term::from_field_i64(f.message, change.message));
        }
        let body = normalize(&change.body);
        let mut doc = TantivyDocument::new();
        doc.add_i64(f.message, change.message);
        doc.add_i64(f.number, change.number.get());
        doc.add_text(f.tokens, tokens::document_text(change.chat, &body));
        writer.add_document(doc).map_err(map_err)?;
        Ok(())
    }

    /// Commits everything applied, recording `seq` as covered, and makes it searchable.
    fn commit(&self, writer: &mut IndexWriter, seq: i64) -> StoreResult<()> {
        let mut prepared = writer.prepare_commit().map_err(map_err)?;
        prepared.set_payload(&seq.to_string());
        prepared.commit().map_err(map_err)?;
        self.reload()
    }

    /// Makes what the index has committed searchable.
    fn reload(&self) -> StoreResult<()> {
        self.reader.reload().map_err(map_err)
    }

    /// Numbers of the chat's documents with, for every piece, a token the piece accepts.
    fn matching(&self, segment: &SegmentReader, scope: &str, pieces: &[Piece]) -> StoreResult<Vec<i64>> {
        let index = segment.inverted_index(self.fields.tokens).map_err(map_err)?;
        let mut sets: Vec<DocSet> = pieces.iter().map(|_| DocSet::new(segment.max_doc())).collect();
        let mut accepting: Vec<usize> = Vec::with_capacity(pieces.len());
        let end = tokens::scope_end(scope);
        let mut stream = index
            .terms()
            .range()
            .ge(scope.as_bytes())
            .lt(end.as_bytes())
            .into_stream()
            .map_err(|e| map_err(e.into()))?;
        while stream.advance() {
            let token = std::str::from_utf8(&stream.key()[scope.len()..]).map_err(StoreError::internal)?;
            accepting.clear();
            accepting.extend(pieces.iter().enumerate().filter(|(_, p)| p.accepts(token)).map(|(i, _)| i));
            if accepting.is_empty() {
                continue;
            }
            let mut postings = index
                .read_block_postings_from_terminfo(stream.value(), IndexRecordOption::Basic)
                .map_err(|e| map_err(e.into()))?;
            while !postings.docs().is_empty() {
                for &i in &accepting {
                    sets[i].insert_all(postings.docs());
                }
                postings.advance();
            }
        }
        let Some(mut found) = sets.pop() else { return Ok(Vec::new()) };
        for set in &sets {
            found.keep_only(set);
        }
        let numbers = segment.fast_fields().i64(NUMBER).map_err(map_err)?;
        let alive = segment.alive_bitset();
        Ok(found
            .iter()
            .filter(|&doc| alive.is_none_or(|a| a.is_alive(doc)))
            .filter_map(|doc| numbers.first(doc))
            .collect())
    }
}

impl CandidateIndex for SearchIndex {
    fn candidates(&self, chat: ChatKey, keyword: &Keyword, pass: Pass) -> StoreResult<Vec<MessageNumber>> {
        let pieces: Vec<Piece> = keyword.terms().iter().flat_map(|t| tokens::pieces(t, pass)).collect();
        let scope = tokens::scope(chat);
        let mut numbers = Vec::new();
        for segment in self.reader.searcher().segment_readers() {
            numbers.extend(self.matching(segment, &scope, &pieces)?);
        }
        Ok(numbers.into_iter().filter_map(|n| MessageNumber::try_from(n).ok()).collect())
    }
}

/// A set of a segment's documents.
struct DocSet(Vec<u64>);

impl DocSet {
    fn new(max_doc: DocId) -> Self {
        DocSet(vec![0; (max_doc as usize).div_ceil(64)])
    }

    fn insert_all(&mut self, docs: &[DocId]) {
        for &d in docs {
            self.0[d as usize / 64] |= 1 << (d % 64);
        }
    }

    fn keep_only(&mut self, other: &DocSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    fn iter(&self) -> impl Iterator<Item = DocId> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            let mut w = word;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros();
                    w &= w - 1;
                    i as DocId * 64 + bit
                })
            })
        })
    }
}
