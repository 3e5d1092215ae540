//! Dataset parsing and the character tokenizer.

use microgpt::data::{EncodedDocs, Tokenizer, load_docs, parse_docs};

fn write_tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("microgpt-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn crlf_whitespace_and_blank_lines() {
    let docs = parse_docs("emma\r\n\r\n  olivia \n\t\n\nava\r\n   \nmia");
    assert_eq!(docs, ["emma", "olivia", "ava", "mia"]);
}

#[test]
fn vocabulary_is_sorted_unique_chars_and_bos_comes_last() {
    let tok = Tokenizer::from_docs(&["emma", "ava"]);
    assert_eq!(tok.chars(), ['a', 'e', 'm', 'v']);
    assert_eq!(tok.bos(), 4);
    assert_eq!(tok.vocab_size(), 5);
    assert_eq!(tok.encode_doc("ava").unwrap(), [4, 0, 3, 0, 4]);
}

#[test]
fn encode_decode_round_trip() {
    let docs = ["emma", "olivia", "ava", "isabella", "sophia"];
    let tok = Tokenizer::from_docs(&docs);
    for d in docs {
        let ids = tok.encode(d).unwrap();
        assert_eq!(ids.len(), d.chars().count());
        assert_eq!(tok.decode(&ids), d);
        // decode skips BOS
        assert_eq!(tok.decode(&tok.encode_doc(d).unwrap()), d);
    }
}

#[test]
fn non_ascii_characters_are_single_tokens() {
    let docs = ["zoë", "josé", "Łukasz", "日本"];
    let tok = Tokenizer::from_docs(&docs);
    // unique scalar values, not bytes: ë é Ł 日 本 are one id each
    let n_unique: std::collections::BTreeSet<char> = docs.iter().flat_map(|d| d.chars()).collect();
    assert_eq!(tok.vocab_size(), n_unique.len() + 1);
    for d in docs {
        let ids = tok.encode(d).unwrap();
        assert_eq!(ids.len(), d.chars().count());
        assert_eq!(tok.decode(&ids), d);
    }
    assert!(tok.chars().windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn unknown_character_is_an_error_naming_it() {
    let tok = Tokenizer::from_docs(&["abc"]);
    let e = tok.encode("abz").unwrap_err();
    assert!(e.to_string().contains("'z'"), "{e}");
}

#[test]
fn encoded_docs_are_wrapped_in_bos() {
    let docs = ["ab", "b"];
    let tok = Tokenizer::from_docs(&docs);
    let enc = EncodedDocs::new(&tok, &docs).unwrap();
    assert_eq!(enc.len(), 2);
    assert_eq!(enc.get(0), [2, 0, 1, 2]);
    assert_eq!(enc.get(1), [2, 1, 2]);
}

#[test]
fn load_errors_are_one_line_and_name_the_file() {
    let missing = std::path::Path::new("/nonexistent/names.txt");
    let e = load_docs(missing).unwrap_err().to_string();
    assert!(
        e.contains("/nonexistent/names.txt") && !e.contains('\n'),
        "{e}"
    );

    let empty = write_tmp("empty.txt", b"\n  \r\n\n");
    let e = load_docs(&empty).unwrap_err().to_string();
    assert!(e.contains("no documents"), "{e}");

    let bad = write_tmp("bad.txt", b"emma\n\xff\xfeava\n");
    let e = load_docs(&bad).unwrap_err().to_string();
    assert!(
        e.contains("not valid UTF-8") && e.contains("offset 5"),
        "{e}"
    );

    let ok = write_tmp("ok.txt", "emma\r\nzoë\n".as_bytes());
    assert_eq!(load_docs(&ok).unwrap(), ["emma", "zoë"]);
}

/// The committed data/names.txt.
fn names_file() -> std::path::PathBuf {
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/names.txt").into()
}

#[test]
fn the_built_in_names_are_the_committed_file() {
    use microgpt::data::{Docs, Source, names};
    use microgpt::session::{RawDocs, fingerprint};
    let file = load_docs(&names_file()).unwrap();
    assert_eq!(file.len(), 32033);
    assert_eq!(names(), file);
    // so a checkpoint records the same fingerprint for either, and resumes with either
    let built_in = RawDocs::read(&Source::Names).unwrap();
    let from_file = RawDocs::read(&Source::File(names_file())).unwrap();
    assert_eq!(built_in.fingerprint(), from_file.fingerprint());
    assert_eq!(built_in.fingerprint(), fingerprint(&file));
    assert_eq!(Docs::read(&Source::Names).unwrap().to_vec(), file);
}

#[test]
fn documents_as_spans_parse_and_shuffle_as_strings_do() {
    use microgpt::data::Docs;
    use microgpt::rng::Rng;
    let text = "emma\r\n\r\n  olivia \n\t\n\nava\r\n   \nmia zoë\n\nx";
    let mut docs = Docs::parse(text.to_string().into());
    let mut strings = parse_docs(text);
    assert_eq!(docs.to_vec(), strings);
    docs.shuffle(&mut Rng::pcg(3));
    Rng::pcg(3).shuffle(&mut strings);
    assert_eq!(docs.to_vec(), strings);
    assert_eq!(docs.iter_range(1..3).collect::<Vec<_>>(), strings[1..3]);
}

/// The vocabulary as microgpt.py builds it: `sorted(set(''.join(docs)))`.
fn sorted_set(docs: &[String]) -> Vec<char> {
    let mut c: Vec<char> = docs.iter().flat_map(|d| d.chars()).collect();
    c.sort();
    c.dedup();
    c
}

#[test]
fn the_vocabulary_and_ids_are_those_of_a_sort_of_every_character() {
    let mixed: Vec<String> = [
        "zoë",
        "Anna-Lena",
        "josé",
        "~x",
        "日本",
        "a b",
        "\u{7f}",
        "Ωß\u{7ff}\u{800}\u{80}😀",
    ]
    .map(String::from)
    .into();
    for docs in [load_docs(&names_file()).unwrap(), mixed] {
        let tok = Tokenizer::from_docs(&docs);
        let chars = sorted_set(&docs);
        assert_eq!(tok.chars(), chars);
        let enc = EncodedDocs::new(&tok, &docs).unwrap();
        for (i, d) in docs.iter().enumerate() {
            // the id of a character is its index in the sorted vocabulary
            let mut want = vec![chars.len()];
            want.extend(d.chars().map(|c| chars.binary_search(&c).unwrap()));
            want.push(chars.len());
            assert_eq!(enc.get(i), want, "{d:?}");
        }
        for c in ['\0', 'Z', '\u{80}', 'é'] {
            assert_eq!(tok.id(c), chars.binary_search(&c).ok(), "{c:?}");
        }
    }
}

/// A run's training split is kept as text and encoded as it is drawn: every document, whole
/// or cut to its first `max` tokens, is what the up-front encoding holds, ASCII or not.
#[test]
fn documents_drawn_as_text_are_the_encoded_documents_cut_to_the_block() {
    use microgpt::data::{DocSet, Docs, TextDocs};
    let text =
        "emma\nüberraschungsei-mit-viel-schokolade\nava\nsehr langes wort ohne ende in sicht\nx\n";
    let docs = Docs::parse(text.to_string().into());
    let tok = Tokenizer::from_strs(docs.iter());
    let enc = EncodedDocs::from_strs(&tok, docs.iter()).unwrap();
    let lazy = TextDocs::new(docs.clone(), tok.clone()).unwrap();
    assert_eq!(DocSet::len(&lazy), 5);
    for i in 0..5 {
        assert_eq!(lazy.get(i), enc.get(i));
        assert_eq!(lazy.text(i), docs.get(i));
        for max in [1, 2, 3, 5, 17, 1000] {
            let (mut a, mut b) = (vec![7], vec![7]);
            lazy.write(i, max, &mut a);
            enc.write(i, max, &mut b);
            let whole = enc.get(i);
            assert_eq!(a, b, "document {i}, max {max}");
            assert_eq!(
                a[1..],
                whole[..whole.len().min(max)],
                "document {i}, max {max}"
            );
        }
    }
    assert_eq!(
        lazy.encoded().iter().collect::<Vec<_>>(),
        enc.iter().collect::<Vec<_>>()
    );
    // a vocabulary without one of the characters is refused up front, naming it
    let small = Tokenizer::from_docs(&["emma", "ava"]);
    let e = TextDocs::new(Docs::parse("emma\nava\navb\n".into()), small).unwrap_err();
    assert_eq!(e.to_string(), "character 'b' is not in the vocabulary");
}

/// The split is microgpt.py's shuffle, then the last `round(n · fraction)` documents held
/// out, at most `val_max`: in the shuffled order, whichever way the documents are stored.
#[test]
fn the_split_is_the_shuffled_documents_with_at_most_val_max_held_out() {
    use microgpt::data::Source;
    use microgpt::rng::Rng;
    use microgpt::session::Dataset;
    let mut shuffled = microgpt::data::names();
    Rng::pcg(5).shuffle(&mut shuffled);
    for (val_max, n_val) in [(None, 3203), (Some(1000), 1000), (Some(5000), 3203)] {
        let d = Dataset::load(&Source::Names, &mut Rng::pcg(5), 0.1, val_max, None).unwrap();
        let n_train = 32033 - n_val;
        assert_eq!(d.train.texts().collect::<Vec<_>>(), shuffled[..n_train]);
        let val: Vec<String> = d.val.iter().map(|t| d.tok.decode(t)).collect();
        assert_eq!(val, shuffled[n_train..]);
    }
}

/// The vocabulary from one pass over the whole text is the one from the documents: the
/// whitespace trimmed off the lines (CR, tabs, spaces, no-break spaces, U+2028, U+3000) is not
/// in it unless a document has it inside.
#[test]
fn the_vocabulary_from_the_whole_text_is_the_documents_vocabulary() {
    use microgpt::data::Docs;
    let texts = [
        microgpt::data::NAMES.to_string(),
        "emma\r\nzoë\r\n\r\n  jo sé \n\tx\t\n".to_string(),
        "a\u{a0}\nb\u{2028}\n\u{3000}c\n".to_string(),
        "a\u{a0}b\nc\td\ne\rf\n日本\u{3000}語\n😀\n".to_string(),
        "\u{7ff}\u{800}\u{80}\n \n".to_string(),
    ];
    for text in texts {
        let docs = Docs::parse(text.clone().into());
        let whole = docs.tokenizer();
        let per_doc = Tokenizer::from_strs(docs.iter());
        assert_eq!(whole.chars(), per_doc.chars(), "{text:?}");
        assert_eq!(whole, per_doc);
    }
}

/// A split's fingerprint is the documents' FNV-1a (what a checkpoint records), whether it
/// comes from the hash of the whole text (lines that are documents as they stand, with or
/// without a last newline) or from the documents one by one (lines trimmed or empty); and
/// the file order is what it hashes, not the shuffled one.
#[test]
fn the_fingerprint_from_the_text_is_the_documents_fingerprint() {
    use microgpt::data::{Source, parse_docs};
    use microgpt::rng::Rng;
    use microgpt::session::{RawDocs, fingerprint};
    let texts = [
        "emma\nolivia\nava\n",
        "emma\nolivia\nava",
        "emma\n",
        "x",
        "emma\r\nolivia\r\n",
        "emma\n\nolivia\n",
        "\nemma\nolivia\n",
        "emma\nolivia\n\n",
        " emma\nolivia\n",
        "emma\nolivia \n",
        "zoë\nß\n\u{a0}jo\n",
        "zoë\nß\njo\u{3000}",
        "a b\nc d\n",
        "a b\n\tc\n",
    ];
    for text in texts {
        let docs = parse_docs(text);
        let want = fingerprint(&docs);
        let raw = RawDocs::from_text(Source::Names, text.to_string());
        assert_eq!(raw.fingerprint(), want, "{text:?}");
        let d = raw.split(&mut Rng::pcg(1), 0.0, None, None).unwrap();
        assert_eq!(d.fingerprint.get(), want, "{text:?}");
        // and a change of one byte of a document changes it
        let other = fingerprint(&[format!("{}!", docs[0])]);
        assert_ne!(other, want, "{text:?}");
    }
    let names = microgpt::data::names();
    let d = RawDocs::read(&Source::Names).unwrap();
    let d = d.split(&mut Rng::pcg(1), 0.1, Some(1000), None).unwrap();
    assert_eq!(d.fingerprint.get(), fingerprint(&names));
}
