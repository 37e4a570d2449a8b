//! chatd's embedded search index.
//!
//! tantivy holds, for every message, the characters of its normalised body (see
//! [`chatd_core::search::normalize`]), its 3-character grams at their positions (the last
//! two characters ending in a marker, so that every 2-character substring begins a 3-gram),
//! and its normalised words. A 1-character term is looked up as a character; a
//! 2-character one as every 3-gram it begins; a longer one as a phrase of its 3-grams at
//! their offsets, so candidates are nearly exact; the whole-word pass also needs the term's
//! words. (2-character grams were indexed once: they cost a fifth of the indexing CPU.)
//! Matching messages' numbers are read from a fast field. Candidates are a superset of the
//! answer: the core verifies each against the body before returning it.
//!
//! The index is fed by one [`Indexer`] thread from the store's change sequence, in commit
//! order. Each index commit records the sequence it covers as its payload, atomically with
//! the documents; after any crash the indexer resumes from there.
#![deny(unsafe_code)]

mod directory;
mod grams;
mod indexer;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use chatd_core::error::StoreResult;
use chatd_core::search::{CandidateIndex, Change, ChatKey, Keyword, Pass, is_word_char, normalize};
use chatd_core::{MessageNumber, StoreError};
use grams::{GramTokenizer, Grams, TermGrams};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, PhraseQuery, Query, TermQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, Searcher, SegmentReader, TantivyDocument,
    Term,
};

pub use indexer::{IndexLock, Indexer, IndexerOptions, catch_up_offline, rebuild};

/// The fields of the schema.
#[derive(Debug, Clone, Copy)]
struct Fields {
    /// The message's store identity: edits delete by it.
    message: Field,
    chat: Field,
    number: Field,
    /// Characters, without positions.
    chars: Field,
    /// 3-character grams at their character positions.
    tri: Field,
    words: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let tokens = |tokenizer, option| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(tokenizer).set_index_option(option),
        )
    };
    let fields = Fields {
        message: b.add_i64_field("message", INDEXED),
        chat: b.add_i64_field("chat", INDEXED),
        number: b.add_i64_field("number", FAST),
        chars: b.add_text_field("chars", tokens(GramTokenizer::CHARS, IndexRecordOption::Basic)),
        tri: b.add_text_field("tri", tokens(GramTokenizer::TRI, IndexRecordOption::WithFreqsAndPositions)),
        words: b.add_text_field("words", tokens(GramTokenizer::WORDS, IndexRecordOption::Basic)),
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
        let tokenizers = index.tokenizers();
        tokenizers.register(GramTokenizer::CHARS, GramTokenizer(Grams::Chars));
        tokenizers.register(GramTokenizer::TRI, GramTokenizer(Grams::Tri));
        tokenizers.register(GramTokenizer::WORDS, GramTokenizer(Grams::Words));
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
        doc.add_i64(f.chat, change.chat.0);
        doc.add_i64(f.number, change.number.get());
        doc.add_text(f.chars, &body);
        doc.add_text(f.tri, &body);
        doc.add_text(f.words, body);
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

    fn query(
        &self,
        searcher: &Searcher,
        chat: ChatKey,
        keyword: &Keyword,
        pass: Pass,
    ) -> StoreResult<BooleanQuery> {
        let f = self.fields;
        let term_query =
            |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
        let mut terms: HashSet<Term> = HashSet::new();
        let mut phrases: Vec<Box<dyn Query>> = Vec::new();
        terms.insert(Term::from_field_i64(f.chat, chat.0));
        for term in keyword.terms() {
            if pass == Pass::WholeWords {
                terms.extend(grams::words(term).map(|w| Term::from_field_text(f.words, w)));
                if term.chars().all(is_word_char) {
                    // A body holds the word as a whole word exactly when its words include
                    // it: the word's term alone is exact, its grams would add nothing.
                    continue;
                }
            }
            match grams::query_grams(term) {
                TermGrams::Char(c) => {
                    terms.insert(Term::from_field_text(f.chars, &c));
                }
                TermGrams::Prefix(p) => {
                    let grams = self.tri_grams_beginning(searcher, &p)?;
                    phrases.push(Box::new(BooleanQuery::union(grams.into_iter().map(term_query).collect())));
                }
                TermGrams::Tri(grams) if grams.len() == 1 => {
                    terms.extend(grams.iter().map(|(_, g)| Term::from_field_text(f.tri, g)));
                }
                TermGrams::Tri(grams) => {
                    let at = grams.into_iter().map(|(o, g)| (o, Term::from_field_text(f.tri, &g))).collect();
                    phrases.push(Box::new(PhraseQuery::new_with_offset(at)));
                }
            }
        }
        Ok(BooleanQuery::intersection(terms.into_iter().map(term_query).chain(phrases).collect()))
    }

    /// Every indexed 3-gram that begins with `prefix`, in any segment.
    fn tri_grams_beginning(&self, searcher: &Searcher, prefix: &str) -> StoreResult<BTreeSet<Term>> {
        let mut out = BTreeSet::new();
        for segment in searcher.segment_readers() {
            let index = segment.inverted_index(self.fields.tri).map_err(map_err)?;
            let mut stream =
                index.terms().range().ge(prefix.as_bytes()).into_stream().map_err(|e| map_err(e.into()))?;
            while stream.advance() && stream.key().starts_with(prefix.as_bytes()) {
                let gram = std::str::from_utf8(stream.key()).map_err(StoreError::internal)?;
                out.insert(Term::from_field_text(self.fields.tri, gram));
            }
        }
        Ok(out)
    }
}

impl CandidateIndex for SearchIndex {
    fn candidates(&self, chat: ChatKey, keyword: &Keyword, pass: Pass) -> StoreResult<Vec<MessageNumber>> {
        let searcher = self.reader.searcher();
        let numbers =
            searcher.search(&self.query(&searcher, chat, keyword, pass)?, &Numbers).map_err(map_err)?;
        Ok(numbers.into_iter().filter_map(|n| MessageNumber::try_from(n).ok()).collect())
    }
}

/// Collects the `number` fast field of every matching document.
struct Numbers;

struct SegmentNumbers {
    column: Column<i64>,
    out: Vec<i64>,
}

impl Collector for Numbers {
    type Fruit = Vec<i64>;
    type Child = SegmentNumbers;

    fn for_segment(&self, _: u32, segment: &SegmentReader) -> tantivy::Result<SegmentNumbers> {
        Ok(SegmentNumbers { column: segment.fast_fields().i64("number")?, out: Vec::new() })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<i64>>) -> tantivy::Result<Vec<i64>> {
        Ok(fruits.concat())
    }
}

impl SegmentCollector for SegmentNumbers {
    type Fruit = Vec<i64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(n) = self.column.first(doc) {
            self.out.push(n);
        }
    }

    fn harvest(self) -> Vec<i64> {
        self.out
    }
}
