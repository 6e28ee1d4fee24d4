//! A zip archive's framing around file bytes that stay where they are: entries are stored (no
//! compression), so the archive is headers, each file's bytes as they are, and a central
//! directory. The browser joins headers and files into one `Blob` without copying the files
//! (a download stored on disk stays on disk); only each file's CRC-32 is needed first, computed
//! as it is read once. Zip64 where a size, an offset or the number of entries needs it, so
//! files and archives past 4 GiB open in every common reader.

use std::collections::HashSet;

/// CRC-32 (IEEE 802.3, as zip uses it).
#[derive(Debug, Clone)]
pub struct Crc32(u32);

fn crc_table() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    // Slicing by 8: eight bytes a step (~4× a byte a step).
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

/// The tables, made on first use: as a `static` they were 8 KB of the wasm module.
fn crc_tables() -> &'static [[u32; 256]; 8] {
    static TABLES: std::sync::OnceLock<Box<[[u32; 256]; 8]>> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| Box::new(crc_table()))
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    /// Nothing read yet.
    pub fn new() -> Crc32 {
        Crc32(!0)
    }

    /// Reads `data` (the next bytes).
    pub fn update(&mut self, data: &[u8]) {
        let t = crc_tables();
        let mut c = self.0;
        let mut chunks = data.chunks_exact(8);
        for b in &mut chunks {
            let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            c = t[7][(lo & 0xFF) as usize]
                ^ t[6][((lo >> 8) & 0xFF) as usize]
                ^ t[5][((lo >> 16) & 0xFF) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][usize::from(b[4])]
                ^ t[2][usize::from(b[5])]
                ^ t[1][usize::from(b[6])]
                ^ t[0][usize::from(b[7])];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The checksum of all bytes read.
    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// A date and time as zip stores them (MS-DOS format, local time, 2-second steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosTime {
    /// Year since 1980 (7 bits), month, day.
    pub date: u16,
    /// Hour, minute, second / 2.
    pub time: u16,
}

impl DosTime {
    /// From calendar fields (month 1-12, day 1-31); years outside 1980-2107 are clamped.
    pub fn new(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DosTime {
        let year = year.clamp(1980, 2107) - 1980;
        DosTime {
            date: ((year << 9) | (month.clamp(1, 12) << 5) | day.clamp(1, 31)) as u16,
            time: ((hour.min(23) << 11) | (minute.min(59) << 5) | (second.min(59) / 2)) as u16,
        }
    }
}

const U32_MAX: u64 = 0xFFFF_FFFF;
/// Flag bit 11: names are UTF-8.
const UTF8: u16 = 1 << 11;

/// Writes an archive's headers: `entry` before each file's bytes, `finish` after the last.
#[derive(Debug)]
pub struct ZipWriter {
    time: DosTime,
    /// Bytes of the archive so far (headers and files).
    offset: u64,
    central: Vec<u8>,
    entries: u64,
    /// The entries' names so far, and the folders they lie in.
    files: HashSet<String>,
    folders: HashSet<String>,
    /// Folders of names asked for that had to be put elsewhere (a file has the name), and
    /// where. (Rare: a `Vec` costs the wasm less than a map.)
    moved: Vec<(String, String)>,
}

/// A name safe to unpack anywhere: `/`-separated, no empty, `.` or `..` parts, no leading
/// `/`, backslashes taken as separators; "file" if nothing is left.
pub fn safe_name(name: &str) -> String {
    // (Zip takes names up to 64 KiB; no file system takes one that long.)
    let mut end = name.len().min(4096);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let parts: Vec<&str> = name[..end]
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != "." && *p != "..")
        .collect();
    if parts.is_empty() {
        "file".into()
    } else {
        parts.join("/")
    }
}

/// `part` inside folder `at` ("" for the top).
fn join(at: &str, part: &str) -> String {
    if at.is_empty() {
        part.to_string()
    } else {
        format!("{at}/{part}")
    }
}

/// `name` with " (n)" before its extension (that of its last part).
fn numbered(name: &str, n: u64) -> String {
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind('.').filter(|&i| i > 0) {
        Some(dot) => format!("{} ({n}){}", &name[..last + dot], &name[last + dot..]),
        None => format!("{name} ({n})"),
    }
}

fn push16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn push32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

fn push64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// `x` as a 32-bit field: itself, or the marker that says "in the zip64 extra field".
fn field32(x: u64) -> u32 {
    x.min(U32_MAX) as u32
}

impl ZipWriter {
    /// An archive whose entries all have modification time `time`.
    pub fn new(time: DosTime) -> ZipWriter {
        ZipWriter {
            time,
            offset: 0,
            central: Vec::new(),
            entries: 0,
            files: HashSet::new(),
            folders: HashSet::new(),
            moved: Vec::new(),
        }
    }

    /// Where an entry asked to be `safe` (a [`safe_name`]) goes: each folder of it where a file
    /// of that name is already, or where an earlier name's folder went, then the file itself
    /// under a number where a file or folder already has its name — so that every entry
    /// unpacks to a place of its own.
    fn place(&mut self, safe: &str) -> String {
        let mut parts: Vec<&str> = safe.split('/').collect();
        let file = parts.pop().unwrap_or_default();
        let mut at = String::new();
        for part in parts {
            let asked = join(&at, part);
            at = match self.moved.iter().find(|(from, _)| *from == asked) {
                Some((_, to)) => to.clone(),
                None if self.files.contains(&asked) => {
                    let to = (2..)
                        .map(|n| format!("{asked} ({n})"))
                        .find(|c| {
                            !self.files.contains(c)
                                && !self.folders.contains(c)
                                && !self.moved.iter().any(|(from, _)| from == c)
                        })
                        .expect("a free number");
                    self.moved.push((asked, to.clone()));
                    to
                }
                None => asked,
            };
            self.folders.insert(at.clone());
        }
        let asked = join(&at, file);
        let taken = |c: &String| self.files.contains(c) || self.folders.contains(c);
        let name = std::iter::once(asked.clone())
            .chain((2..).map(|n| numbered(&asked, n)))
            .find(|c| !taken(c))
            .expect("a free number");
        self.files.insert(name.clone());
        name
    }

    /// The bytes that go before the next file, of `size` bytes with CRC-32 `crc`, named `name`
    /// (made safe, and put where no other entry is by a number, see [`ZipWriter::place`]).
    /// Returns them with the name the entry got.
    pub fn entry(&mut self, name: &str, size: u64, crc: u32) -> (Vec<u8>, String) {
        let name = self.place(&safe_name(name));
        let big = size >= U32_MAX;
        let far = self.offset >= U32_MAX;
        let version: u16 = if big || far { 45 } else { 20 };

        let mut local = Vec::with_capacity(30 + name.len() + 20);
        push32(&mut local, 0x0403_4b50);
        push16(&mut local, version);
        push16(&mut local, UTF8);
        push16(&mut local, 0); // stored
        push16(&mut local, self.time.time);
        push16(&mut local, self.time.date);
        push32(&mut local, crc);
        push32(&mut local, field32(size));
        push32(&mut local, field32(size));
        push16(&mut local, name.len() as u16);
        push16(&mut local, if big { 20 } else { 0 });
        local.extend_from_slice(name.as_bytes());
        if big {
            push16(&mut local, 0x0001);
            push16(&mut local, 16);
            push64(&mut local, size);
            push64(&mut local, size);
        }

        // The central entry: the zip64 field holds just the values too large for their own.
        let mut extra = Vec::new();
        if big {
            push64(&mut extra, size);
            push64(&mut extra, size);
        }
        if far {
            push64(&mut extra, self.offset);
        }
        let c = &mut self.central;
        push32(c, 0x0201_4b50);
        push16(c, (3 << 8) | 45); // made by: Unix, zip 4.5
        push16(c, version);
        push16(c, UTF8);
        push16(c, 0);
        push16(c, self.time.time);
        push16(c, self.time.date);
        push32(c, crc);
        push32(c, field32(size));
        push32(c, field32(size));
        push16(c, name.len() as u16);
        push16(
            c,
            if extra.is_empty() {
                0
            } else {
                4 + extra.len() as u16
            },
        );
        push16(c, 0); // comment
        push16(c, 0); // disk
        push16(c, 0); // internal attributes
        push32(c, 0o100644 << 16); // a regular file, rw-r--r--
        push32(c, field32(self.offset));
        c.extend_from_slice(name.as_bytes());
        if !extra.is_empty() {
            push16(c, 0x0001);
            push16(c, extra.len() as u16);
            c.extend_from_slice(&extra);
        }

        self.entries += 1;
        self.offset += local.len() as u64 + size;
        (local, name)
    }

    /// The bytes after the last file: the central directory and its end records.
    pub fn finish(self) -> Vec<u8> {
        let start = self.offset;
        let size = self.central.len() as u64;
        let mut out = self.central;
        let zip64 = self.entries >= 0xFFFF || start >= U32_MAX || size >= U32_MAX;
        if zip64 {
            let at = start + size;
            push32(&mut out, 0x0606_4b50);
            push64(&mut out, 44);
            push16(&mut out, (3 << 8) | 45);
            push16(&mut out, 45);
            push32(&mut out, 0);
            push32(&mut out, 0);
            push64(&mut out, self.entries);
            push64(&mut out, self.entries);
            push64(&mut out, size);
            push64(&mut out, start);
            push32(&mut out, 0x0706_4b50);
            push32(&mut out, 0);
            push64(&mut out, at);
            push32(&mut out, 1);
        }
        push32(&mut out, 0x0605_4b50);
        push16(&mut out, 0);
        push16(&mut out, 0);
        let n = self.entries.min(0xFFFF) as u16;
        push16(&mut out, n);
        push16(&mut out, n);
        push32(&mut out, field32(size));
        push32(&mut out, field32(start));
        push16(&mut out, 0);
        out
    }
}

// Native only: read back with the `zip` crate, a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};

    fn crc(data: &[u8]) -> u32 {
        let mut c = Crc32::new();
        c.update(data);
        c.finish()
    }

    /// An archive of `files` as the browser puts it together: each entry's header, then its
    /// bytes, then the central directory.
    fn archive(files: &[(&str, Vec<u8>)]) -> (Vec<u8>, Vec<String>) {
        let mut w = ZipWriter::new(DosTime::new(2026, 12, 6, 17, 30, 41));
        let mut out = Vec::new();
        let mut names = Vec::new();
        for (name, data) in files {
            let (head, got) = w.entry(name, data.len() as u64, crc(data));
            out.extend_from_slice(&head);
            out.extend_from_slice(data);
            names.push(got);
        }
        out.extend_from_slice(&w.finish());
        (out, names)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

        /// Whatever the names (separators, dots, duplicates, a file named like another's
        /// folder), every entry unpacks to a place of its own inside the archive's folder:
        /// names unique, no empty, `.` or `..` part, no backslash, none a folder of another,
        /// and each entry's bytes read back.
        #[test]
        fn any_names_unpack_each_to_a_place_of_its_own(
            names in proptest::collection::vec("(a|b|\\.|\\.\\.|/|\\\\|\\.txt| |é){0,8}", 1..12),
        ) {
            let files: Vec<(&str, Vec<u8>)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), vec![i as u8; i % 3]))
                .collect();
            let (bytes, got) = archive(&files);
            for (i, n) in got.iter().enumerate() {
                proptest::prop_assert!(!n.starts_with('/') && !n.contains('\\'), "{:?}", n);
                proptest::prop_assert!(
                    n.split('/').all(|p| !p.is_empty() && p != "." && p != ".."),
                    "{:?}", n
                );
                for (j, m) in got.iter().enumerate() {
                    proptest::prop_assert!(i == j || n != m, "{:?} twice", n);
                    proptest::prop_assert!(
                        !m.starts_with(&format!("{n}/")),
                        "{:?} is a file and a folder of {:?}", n, m
                    );
                }
            }
            let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
            for (i, (_, data)) in files.iter().enumerate() {
                let mut e = z.by_index(i).unwrap();
                proptest::prop_assert_eq!(e.name(), got[i].as_str());
                let mut back = Vec::new();
                e.read_to_end(&mut back).unwrap();
                proptest::prop_assert_eq!(&back, data);
            }
        }
    }

    #[test]
    fn a_file_named_like_a_folder_moves_the_later_of_the_two() {
        let files: Vec<(&str, Vec<u8>)> =
            ["photos", "photos/a.jpg", "photos/b.jpg", "x/y", "x", "x/z"]
                .iter()
                .map(|n| (*n, Vec::new()))
                .collect();
        let (_, names) = archive(&files);
        assert_eq!(
            names,
            [
                "photos",
                "photos (2)/a.jpg",
                "photos (2)/b.jpg",
                "x/y",
                "x (2)",
                "x/z"
            ]
        );
    }

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc(b""), 0);
        assert_eq!(crc(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        // Fed in pieces of every length: the same as at once.
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for step in [1, 3, 7, 8, 9, 64, 1000] {
            let mut c = Crc32::new();
            for part in data.chunks(step) {
                c.update(part);
            }
            assert_eq!(c.finish(), crc(&data), "in pieces of {step}");
        }
    }

    #[test]
    fn an_archive_reads_back_with_its_names_bytes_and_time() {
        let files = [
            ("album/a.txt", b"hello".to_vec()),
            (
                "album/2024/b.bin",
                (0..70_000u32).map(|i| i as u8).collect(),
            ),
            ("empty", Vec::new()),
            ("album/a.txt", b"the same name again".to_vec()),
            ("../../etc/passwd", b"not outside".to_vec()),
            ("C:\\temp\\x.txt", b"backslashes".to_vec()),
            ("名前/ファイル.txt", "ユニコード".as_bytes().to_vec()),
            ("/", b"nothing left".to_vec()),
        ];
        let (bytes, names) = archive(&files);
        assert_eq!(
            names,
            [
                "album/a.txt",
                "album/2024/b.bin",
                "empty",
                "album/a (2).txt",
                "etc/passwd",
                "C:/temp/x.txt",
                "名前/ファイル.txt",
                "file",
            ]
        );
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
        assert_eq!(z.len(), files.len());
        for (i, (_, data)) in files.iter().enumerate() {
            let mut e = z.by_index(i).unwrap();
            assert_eq!(e.name(), names[i]);
            let mut got = Vec::new();
            e.read_to_end(&mut got).expect("its bytes, CRC checked");
            assert_eq!(&got, data, "{}", names[i]);
            let t = e.last_modified().expect("a time");
            assert_eq!(
                (
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ),
                (2026, 12, 6, 17, 30, 40)
            );
            assert_eq!(e.unix_mode(), Some(0o100644));
        }
    }

    #[test]
    fn a_wrong_crc_is_caught_by_the_reader() {
        let mut w = ZipWriter::new(DosTime::new(2026, 1, 1, 0, 0, 0));
        let (mut bytes, _) = w.entry("x", 3, crc(b"abc") ^ 1);
        bytes.extend_from_slice(b"abc");
        bytes.extend_from_slice(&w.finish());
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut got = Vec::new();
        assert!(z.by_index(0).unwrap().read_to_end(&mut got).is_err());
    }

    #[test]
    fn numbers_go_before_the_extension_of_the_last_part() {
        assert_eq!(numbered("a.b/c", 2), "a.b/c (2)");
        assert_eq!(numbered("a/.hidden", 3), "a/.hidden (3)");
        assert_eq!(numbered("x.tar.gz", 2), "x.tar (2).gz");
        let long = "é".repeat(3000);
        assert_eq!(safe_name(&long).len(), 4096, "cut at a character boundary");
    }

    /// A file past 4 GiB, after another entry, and more than 65,535 entries: the zip64 records
    /// are where readers look for them. (The big file is sparse on disk; its bytes are not read.)
    #[test]
    fn zip64_sizes_offsets_and_counts_read_back() {
        let size = (5u64 << 30) + 3;
        let dir = std::env::temp_dir().join(format!("swarmdrop-zip64-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.zip");
        let mut f = std::fs::File::create(&path).unwrap();
        let mut w = ZipWriter::new(DosTime::new(2026, 12, 6, 0, 0, 0));
        let (head, _) = w.entry("small.txt", 2, crc(b"hi"));
        f.write_all(&head).unwrap();
        f.write_all(b"hi").unwrap();
        let (head, _) = w.entry("big.iso", size, 0x1234_5678);
        f.write_all(&head).unwrap();
        f.seek(SeekFrom::Current(size as i64)).unwrap();
        let (head, _) = w.entry("after.txt", 5, crc(b"after"));
        f.write_all(&head).unwrap();
        f.write_all(b"after").unwrap();
        f.write_all(&w.finish()).unwrap();
        drop(f);
        let mut z = ::zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(z.len(), 3);
        assert_eq!(z.by_index(1).unwrap().size(), size);
        let mut got = String::new();
        z.by_name("after.txt")
            .unwrap()
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(
            got, "after",
            "an entry past 4 GiB, found through its zip64 offset"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let files: Vec<(String, Vec<u8>)> =
            (0..70_000).map(|i| (format!("{i}"), Vec::new())).collect();
        let refs: Vec<(&str, Vec<u8>)> =
            files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
        let (bytes, _) = archive(&refs);
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(z.len(), 70_000);
        assert_eq!(z.by_index(69_999).unwrap().name(), "69999");
    }
}
