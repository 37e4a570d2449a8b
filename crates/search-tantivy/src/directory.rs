//! The index's files, read so that the process holds only what it is using.
//!
//! tantivy's `MmapDirectory` maps every segment file whole for as long as a segment is open.
//! Every page a merge or a search has touched then stays in the process's resident set until
//! the kernel wants the memory back, which at millions of messages is most of the peak RSS.
//! [`SegmentFiles`] writes, locks and watches exactly as `MmapDirectory` does, and differs
//! in reading: a small read is copied out of the file (`pread`); a large one maps just the
//! range asked for, which tantivy holds only as long as it uses it (a term's postings for
//! one query or one merge step). The file data itself stays cached by the kernel, as for
//! any file; what leaves is the process's claim on it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tantivy::HasLen;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes, WatchCallback, WatchHandle,
    WritePtr,
};

/// Reads at most this long are copied; longer ones are mapped.
const COPY_AT_MOST: usize = 64 * 1024;

/// A tantivy directory on disk; see the module documentation.
#[derive(Clone, Debug)]
pub struct SegmentFiles {
    root: PathBuf,
    inner: MmapDirectory,
    /// Open files by path, so that a reader reload does not reopen every segment's files.
    open: Arc<Mutex<HashMap<PathBuf, Weak<IndexFile>>>>,
}

impl SegmentFiles {
    pub fn open(root: &Path) -> tantivy::Result<Self> {
        let inner = MmapDirectory::open(root)?;
        // Absolute, as MmapDirectory's own: a relative path would follow the working directory.
        let root = root.canonicalize().map_err(tantivy::TantivyError::from)?;
        Ok(SegmentFiles { root, inner, open: Arc::default() })
    }

    fn file(&self, path: &Path) -> Result<Arc<IndexFile>, OpenReadError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = open.get(path).and_then(Weak::upgrade) {
            return Ok(file);
        }
        let io_error = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => OpenReadError::FileDoesNotExist(path.to_path_buf()),
            _ => OpenReadError::wrap_io_error(e, path.to_path_buf()),
        };
        let file = File::open(self.root.join(path)).map_err(io_error)?;
        let len = usize::try_from(file.metadata().map_err(io_error)?.len())
            .map_err(|e| io_error(io::Error::other(e)))?;
        let file = Arc::new(IndexFile { file, len });
        open.retain(|_, f| f.strong_count() > 0);
        open.insert(path.to_path_buf(), Arc::downgrade(&file));
        Ok(file)
    }
}

impl Directory for SegmentFiles {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(self.file(path)?)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        // Held across the deletion, so that no handle to the deleted file is cached.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(path);
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(callback)
    }
}

/// One open, immutable index file (tantivy never changes a file it has written). Files stay
/// open while a segment is in use, a few per segment: they share the process's open-file
/// limit with sockets (the server raises its soft limit at start).
#[derive(Debug)]
struct IndexFile {
    file: File,
    len: usize,
}

impl HasLen for IndexFile {
    fn len(&self) -> usize {
        self.len
    }
}

impl FileHandle for IndexFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.end > self.len || range.start > range.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("read of {range:?} beyond a file of {} bytes", self.len),
            ));
        }
        if range.len() <= COPY_AT_MOST {
            let mut bytes = vec![0; range.len()];
            self.file.read_exact_at(&mut bytes, range.start as u64)?;
            return Ok(OwnedBytes::new(bytes));
        }
        map(&self.file, range)
    }
}

#[allow(unsafe_code)]
fn map(file: &File, range: Range<usize>) -> io::Result<OwnedBytes> {
    // SAFETY: a mapping is undefined behaviour if the file changes under it. Index files
    // are written once, then only read and eventually deleted (a deleted file stays intact
    // while mapped), and the index directory belongs to chatd: the same premise as tantivy's
    // own `MmapDirectory`.
    let mapped =
        unsafe { memmap2::MmapOptions::new().offset(range.start as u64).len(range.len()).map(file)? };
    Ok(OwnedBytes::new(mapped))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn small_and_large_reads_return_the_file_s_bytes_and_files_are_shared_while_open() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * COPY_AT_MOST as u32).map(|i| (i % 251) as u8).collect();
        let mut w = File::create(dir.path().join("seg.idx")).unwrap();
        w.write_all(&data).unwrap();
        drop(w);

        let files = SegmentFiles::open(dir.path()).unwrap();
        let handle = files.get_file_handle(Path::new("seg.idx")).unwrap();
        assert_eq!(handle.len(), data.len());
        // Small (copied) and large (mapped) reads, at unaligned offsets.
        for range in [0..10, 5..COPY_AT_MOST + 5, 4097..data.len(), 0..data.len(), 7..7] {
            assert_eq!(
                handle.read_bytes(range.clone()).unwrap().as_slice(),
                &data[range.clone()],
                "{range:?}"
            );
        }
        assert!(handle.read_bytes(0..data.len() + 1).is_err());

        let again = files.get_file_handle(Path::new("seg.idx")).unwrap();
        assert!(std::ptr::addr_eq(Arc::as_ptr(&handle), Arc::as_ptr(&again)), "one open file per path");
        assert!(matches!(
            files.get_file_handle(Path::new("missing")),
            Err(OpenReadError::FileDoesNotExist(_))
        ));
    }
}
