//! `Idempotency-Key`s in a batch (SPEC §8). After the batch has locked its parents and
//! before it writes a row, it claims each key it carries: one `INSERT … ON CONFLICT` in
//! (scope, key) order inserts the keys no one holds and takes over expired ones, each with
//! the number its create will get if every claim succeeds (the parents are locked, so that
//! is known). A key another transaction holds is locked by that statement either way, so a
//! batch racing with another instance's on one key waits for it to commit and then reads the
//! key it stored: one row is created, and every request with that key answers it. The
//! claimed keys are stored in the batch's transaction, so a create and its key commit
//! together or not at all.
//!
//! Within the batch, jobs sharing a key are settled together: with the first one's
//! parameters they follow its answer, with others they are refused. Only when a held key
//! turned a job into a retry does a later create of the same parent get another number than
//! its key was claimed with; [`Settled::finish`] corrects those keys.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chatd_core::error::StoreResult;
use chatd_core::{AppToken, Application, ChatNumber, Idempotent, MessageNumber, StoreError, Timestamp};
use sqlx::{PgConnection, Row};

use super::{Answer, ChatLocks, Counter, Failure, LockedApp, Write};

/// A create's key, with how long keys are honoured.
#[derive(Debug)]
pub(crate) struct RetryKey {
    pub key: Idempotent,
    pub window: Duration,
}

/// The scope of the keys of application creates; applications' ids start at 1.
const APPLICATIONS_SCOPE: i64 = 0;

/// How the batch's keys settle its jobs before anything is numbered.
#[derive(Debug)]
pub(super) struct Settled {
    /// Jobs the batch does not run: decided above, or following another job.
    pub skip: Vec<bool>,
    /// (job, the earlier job of the batch with its key and parameters, whose answer it gets).
    pub followers: Vec<(usize, usize)>,
    /// Keys this batch claimed, each for the job that creates what it names.
    claimed: Vec<Claimed>,
}

/// A key the batch claimed.
#[derive(Debug)]
struct Claimed {
    job: usize,
    scope: i64,
    key: String,
    /// The number it was claimed with (0 for an application).
    number: i64,
}

/// The numbers the batch's creates get if none of them turns out a retry: per parent, its
/// locked last number plus the creates before, in batch order. Jobs that only repeat another job's
/// key (`repeats`) create nothing.
fn provisional_numbers(
    batch: &[Write],
    apps: &HashMap<String, LockedApp>,
    chats: &ChatLocks<'_>,
    repeats: &HashSet<usize>,
) -> Vec<i64> {
    let mut counters: HashMap<(bool, i64), Counter> = HashMap::new();
    let mut numbers = vec![0; batch.len()];
    for (i, job) in batch.iter().enumerate().filter(|(i, _)| !repeats.contains(i)) {
        let parent = match job {
            Write::CreateChat { token, .. } => apps.get(token.as_str()).map(|a| ((false, a.id), a.chats)),
            Write::CreateMessage { token, chat, .. } => match chats.get(&(token.as_str(), chat.get())) {
                Some(Ok(c)) => Some(((true, c.id), c.messages)),
                _ => None,
            },
            _ => None,
        };
        if let Some((parent, counter)) = parent {
            numbers[i] = counters.entry(parent).or_insert(counter).next();
        }
    }
    numbers
}

/// A job's key and the scope it lives in, when the job has a key and its parent exists (a
/// job whose parent is missing fails with a 404 and stores nothing).
fn scoped<'a>(
    job: &'a Write,
    apps: &HashMap<String, LockedApp>,
    chats: &ChatLocks<'_>,
) -> Option<(i64, &'a RetryKey)> {
    match job {
        Write::CreateApplication { key: Some(key), .. } => Some((APPLICATIONS_SCOPE, key)),
        Write::CreateChat { token, key: Some(key), .. } => apps.get(token.as_str()).map(|a| (a.id, key)),
        Write::CreateMessage { token, chat, key: Some(key), .. } => {
            match chats.get(&(token.as_str(), chat.get())) {
                Some(Ok(c)) => Some((c.application_id, key)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Claims the batch's keys and settles the jobs that carry one: the answers the keys
/// decide (replays of earlier creates, reused keys; `None` for jobs the batch still runs).
pub(super) async fn settle(
    db: &mut PgConnection,
    batch: &[Write],
    apps: &HashMap<String, LockedApp>,
    chats: &ChatLocks<'_>,
    now: i64,
) -> Result<(Vec<Option<Answer>>, Settled), Failure> {
    let mut answers: Vec<Option<Answer>> = batch.iter().map(|_| None).collect();
    let mut settled = Settled { skip: vec![false; batch.len()], followers: Vec::new(), claimed: Vec::new() };
    // Jobs by key, in the (scope, key) order every instance claims in.
    let mut groups: BTreeMap<(i64, &str), Vec<(usize, &RetryKey)>> = BTreeMap::new();
    for (i, job) in batch.iter().enumerate() {
        if let Some((scope, key)) = scoped(job, apps, chats) {
            groups.entry((scope, key.key.key.as_str())).or_default().push((i, key));
        }
    }
    if groups.is_empty() {
        return Ok((answers, settled));
    }
    let repeats: HashSet<usize> = groups.values().flat_map(|jobs| jobs[1..].iter().map(|j| j.0)).collect();
    let numbers = provisional_numbers(batch, apps, chats, &repeats);

    // Claim every key with its first job's parameters and number.
    let (mut scopes, mut names, mut fingerprints, mut resources, mut tokens, mut app_names) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cutoff = now;
    for (&(scope, name), jobs) in &groups {
        let (first, key) = jobs[0];
        scopes.push(scope);
        names.push(name);
        fingerprints.push(key.key.fingerprint.as_bytes());
        resources.push(numbers[first]);
        let (token, app_name) = match &batch[first] {
            Write::CreateApplication { token, name, .. } => (Some(token.as_str()), Some(name.as_str())),
            _ => (None, None),
        };
        tokens.push(token);
        app_names.push(app_name);
        // One store, one window: every key of the batch carries the same.
        let window = i64::try_from(key.window.as_millis()).unwrap_or(i64::MAX);
        cutoff = cutoff.min(now.saturating_sub(window));
    }
    let rows = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at, resource, token, name) \
         SELECT s, k, f, $4, r, t, n \
         FROM unnest($1::bigint[], $2::text[], $3::bytea[], $5::bigint[], $6::text[], $7::text[]) \
         AS u(s, k, f, r, t, n) ORDER BY s, k \
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
         created_at = EXCLUDED.created_at, resource = EXCLUDED.resource, token = EXCLUDED.token, \
         name = EXCLUDED.name \
         WHERE idempotency_keys.created_at < $8 \
         RETURNING scope, key",
    )
    .bind(&scopes)
    .bind(&names)
    .bind(&fingerprints)
    .bind(now)
    .bind(&resources)
    .bind(&tokens)
    .bind(&app_names)
    .bind(cutoff)
    .fetch_all(&mut *db)
    .await?;
    let mut claimed: HashSet<(i64, String)> = HashSet::new();
    for r in &rows {
        claimed.insert((r.try_get("scope")?, r.try_get("key")?));
    }

    // Keys held before this batch: what they name, for retries to answer again.
    let held: Vec<(i64, &str)> =
        groups.keys().filter(|&&(s, k)| !claimed.contains(&(s, k.to_owned()))).copied().collect();
    let stored = stored_keys(db, &held).await?;

    for ((scope, name), jobs) in &groups {
        let (first, first_key) = jobs[0];
        let earlier = stored.get(&(*scope, (*name).to_owned()));
        for &(i, key) in jobs {
            settled.skip[i] = true;
            let same = |fingerprint: &[u8]| key.key.fingerprint.matches(fingerprint);
            answers[i] = match earlier {
                Some(earlier) if same(&earlier.fingerprint) => Some(earlier.answer(&batch[i])?),
                Some(_) => Some(Answer::Failed(StoreError::IdempotencyKeyReused)),
                None if i == first => {
                    settled.skip[i] = false;
                    settled.claimed.push(Claimed {
                        job: i,
                        scope: *scope,
                        key: (*name).to_owned(),
                        number: numbers[i],
                    });
                    None
                }
                None if same(first_key.key.fingerprint.as_bytes()) => {
                    settled.followers.push((i, first));
                    None
                }
                None => Some(Answer::Failed(StoreError::IdempotencyKeyReused)),
            };
        }
    }
    Ok((answers, settled))
}

/// A key stored by an earlier transaction.
#[derive(Debug)]
struct Stored {
    fingerprint: Vec<u8>,
    resource: i64,
    name: Option<String>,
    created_at: i64,
    /// The new application's token, for keys of application creates.
    token: Option<String>,
}

impl Stored {
    /// The answer of the create this key named, for `job` (a job with the same parameters).
    fn answer(&self, job: &Write) -> Result<Answer, Failure> {
        let bad = || StoreError::internal("a stored idempotency key does not fit its create");
        Ok(match job {
            Write::CreateApplication { .. } => {
                let token = self.token.as_deref().and_then(AppToken::parse).ok_or_else(bad)?;
                let at = Timestamp::from_millis(self.created_at);
                // The first answer: the name it was created with, no chats, never updated.
                Answer::Application(Application {
                    token,
                    name: self.name.clone().ok_or_else(bad)?,
                    chats_count: 0,
                    created_at: at,
                    updated_at: at,
                })
            }
            Write::CreateChat { .. } => Answer::Chat(ChatNumber::try_from(self.resource).map_err(|_| bad())?),
            Write::CreateMessage { .. } => {
                Answer::Message(MessageNumber::try_from(self.resource).map_err(|_| bad())?)
            }
            _ => return Err(bad().into()),
        })
    }
}

async fn stored_keys(
    db: &mut PgConnection,
    held: &[(i64, &str)],
) -> Result<HashMap<(i64, String), Stored>, Failure> {
    if held.is_empty() {
        return Ok(HashMap::new());
    }
    let scopes: Vec<i64> = held.iter().map(|k| k.0).collect();
    let names: Vec<&str> = held.iter().map(|k| k.1).collect();
    let rows = sqlx::query(
        "SELECT scope, key, fingerprint, resource, token, name, created_at FROM idempotency_keys \
         WHERE (scope, key) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))",
    )
    .bind(&scopes)
    .bind(&names)
    .fetch_all(&mut *db)
    .await?;
    let mut stored = HashMap::new();
    for r in &rows {
        let key = (r.try_get("scope")?, r.try_get("key")?);
        stored.insert(
            key,
            Stored {
                fingerprint: r.try_get("fingerprint")?,
                resource: r.try_get("resource")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                token: r.try_get("token")?,
            },
        );
    }
    if stored.len() != held.len() {
        // The claim locked every key it did not take: none can have gone since.
        return Err(StoreError::internal("an idempotency key vanished while locked").into());
    }
    Ok(stored)
}

impl Answer {
    /// The same answer, for a job that repeats this one's create.
    fn again(&self) -> Answer {
        match self {
            Answer::Application(a) => Answer::Application(a.clone()),
            Answer::Chat(n) => Answer::Chat(*n),
            Answer::Message(n) => Answer::Message(*n),
            Answer::Edited(m) => Answer::Edited(m.clone()),
            Answer::Failed(e) => Answer::Failed(super::copy(e)),
        }
    }
}

impl Settled {
    /// Gives followers their leaders' answers, once the batch has written its rows and
    /// decided every other answer; corrects the keys claimed with a number their create did
    /// not get (a job before it in the same parent turned out a retry).
    pub(super) async fn finish(
        self,
        db: &mut PgConnection,
        answers: &mut [Option<Answer>],
    ) -> Result<(), Failure> {
        for &(i, leader) in &self.followers {
            answers[i] = answers[leader].as_ref().map(Answer::again);
        }
        let (mut scopes, mut keys, mut numbers) = (Vec::new(), Vec::new(), Vec::new());
        for claimed in &self.claimed {
            let number = match &answers[claimed.job] {
                Some(Answer::Chat(n)) => n.get(),
                Some(Answer::Message(n)) => n.get(),
                Some(Answer::Application(_)) => continue,
                _ => {
                    return Err(
                        StoreError::internal("a claimed idempotency key's create did not succeed").into()
                    );
                }
            };
            if number != claimed.number {
                scopes.push(claimed.scope);
                keys.push(claimed.key.as_str());
                numbers.push(number);
            }
        }
        if !scopes.is_empty() {
            sqlx::query(
                "UPDATE idempotency_keys AS t SET resource = u.r \
                 FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS u(s, k, r) \
                 WHERE t.scope = u.s AND t.key = u.k",
            )
            .bind(&scopes)
            .bind(&keys)
            .bind(&numbers)
            .execute(&mut *db)
            .await?;
        }
        Ok(())
    }
}

/// Deletes up to `limit` keys older than `window`, oldest first, on the pool rather than
/// the writer's connection (no batch waits for it); returns how many. Keys a batch holds
/// locked are skipped, as are those another instance's sweep is deleting.
pub(crate) async fn sweep(pool: &sqlx::PgPool, window: Duration, limit: usize) -> StoreResult<usize> {
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Timestamp::now().as_millis().saturating_sub(window);
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE (scope, key) IN \
         (SELECT scope, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2 \
         FOR UPDATE SKIP LOCKED)",
    )
    .bind(cutoff)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(pool)
    .await
    .map_err(crate::error::map)?;
    Ok(usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX))
}
