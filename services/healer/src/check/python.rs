//! Python: top-level imports against the distributions the manifests declare.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use super::{Checked, Missing, Workspace, base, canonical, dir, lines};
use crate::patterns::PatternSet;

/// `sys.stdlib_module_names` of CPython 3.11 (public names; `_private` ones are skipped by
/// prefix), plus `__future__`.
const STDLIB: &str = "__future__ abc aifc antigravity argparse array ast asynchat asyncio asyncore atexit audioop \
    base64 bdb binascii bisect builtins bz2 cProfile calendar cgi cgitb chunk cmath cmd code codecs \
    codeop collections colorsys compileall concurrent configparser contextlib contextvars copy \
    copyreg crypt csv ctypes curses dataclasses datetime dbm decimal difflib dis distutils doctest \
    email encodings ensurepip enum errno faulthandler fcntl filecmp fileinput fnmatch fractions \
    ftplib functools gc genericpath getopt getpass gettext glob graphlib grp gzip hashlib heapq hmac \
    html http idlelib imaplib imghdr imp importlib inspect io ipaddress itertools json keyword \
    lib2to3 linecache locale logging lzma mailbox mailcap marshal math mimetypes mmap modulefinder \
    msilib msvcrt multiprocessing netrc nis nntplib nt ntpath nturl2path numbers opcode operator \
    optparse os ossaudiodev pathlib pdb pickle pickletools pipes pkgutil platform plistlib poplib \
    posix posixpath pprint profile pstats pty pwd py_compile pyclbr pydoc pydoc_data pyexpat queue \
    quopri random re readline reprlib resource rlcompleter runpy sched secrets select selectors \
    shelve shlex shutil signal site smtpd smtplib sndhdr socket socketserver spwd sqlite3 \
    sre_compile sre_constants sre_parse ssl stat statistics string stringprep struct subprocess \
    sunau symtable sys sysconfig syslog tabnanny tarfile telnetlib tempfile termios textwrap this \
    threading time timeit tkinter token tokenize tomllib trace traceback tracemalloc tty turtle \
    turtledemo types typing unicodedata unittest urllib uu uuid venv warnings wave weakref \
    webbrowser winreg winsound wsgiref xdrlib xml xmlrpc zipapp zipfile zipimport zlib zoneinfo";

/// Provided by the installer or the test runner of any environment that runs the project.
const TOOLING: &str = "setuptools pkg_resources pip wheel pytest _pytest";

/// What well-known distributions bring in (imports that work without being declared): a run
/// installs them with their dependents, so importing them is not a predicted failure.
const TRANSITIVE: &str = "\
requests: urllib3 idna certifi charset_normalizer chardet\n\
flask: werkzeug jinja2 click itsdangerous markupsafe blinker\n\
fastapi: starlette pydantic anyio typing_extensions sniffio annotated_types pydantic_core\n\
starlette: anyio sniffio typing_extensions\n\
pydantic: typing_extensions pydantic_core annotated_types\n\
pydantic_settings: pydantic dotenv typing_extensions\n\
httpx: httpcore anyio certifi idna sniffio h11\n\
openai: httpx pydantic anyio typing_extensions tqdm distro sniffio jiter\n\
anthropic: httpx pydantic anyio typing_extensions distro sniffio jiter\n\
boto3: botocore s3transfer jmespath dateutil urllib3\n\
botocore: jmespath dateutil urllib3\n\
pandas: numpy dateutil pytz tzdata\n\
matplotlib: numpy PIL pyparsing cycler kiwisolver dateutil packaging fontTools contourpy\n\
scipy: numpy\n\
scikit_learn: numpy scipy joblib threadpoolctl\n\
seaborn: numpy pandas matplotlib\n\
torch: numpy typing_extensions sympy networkx jinja2 filelock fsspec\n\
transformers: numpy tqdm requests yaml huggingface_hub filelock regex packaging safetensors tokenizers\n\
django: asgiref sqlparse\n\
djangorestframework: django\n\
celery: kombu billiard vine click dateutil\n\
aiohttp: yarl multidict aiosignal frozenlist attr aiohappyeyeballs\n\
uvicorn: click h11\n\
sqlalchemy: greenlet typing_extensions\n\
flask_sqlalchemy: flask sqlalchemy\n\
jinja2: markupsafe\n\
black: click platformdirs packaging pathspec mypy_extensions\n\
sphinx: pygments docutils jinja2 babel alabaster imagesize snowballstemmer packaging requests\n\
mkdocs: click jinja2 markdown yaml watchdog\n\
typer: click rich typing_extensions\n\
rich: pygments markdown_it\n\
pytest: pluggy iniconfig packaging _pytest\n\
pytest_asyncio: pytest\n\
pytest_cov: pytest coverage\n\
jsonschema: attr referencing rpds jsonschema_specifications\n\
google_cloud_storage: google\n\
grpcio_tools: grpc google\n\
langchain: langchain_core pydantic yaml requests sqlalchemy tenacity\n\
pyjwt: jwt\n\
python_jose: jose ecdsa rsa\n\
alembic: sqlalchemy mako\n\
redis: async_timeout\n\
kombu: amqp vine\n\
tensorflow: numpy google absl keras\n\
keras: numpy absl h5py\n\
nltk: click joblib regex tqdm\n\
pillow: PIL\n\
beautifulsoup4: bs4 soupsieve\n\
opencv_python: cv2 numpy\n\
opencv_python_headless: cv2 numpy\n\
opencv_contrib_python: cv2 numpy";

static ROWS: LazyLock<super::Transitive> = LazyLock::new(|| super::transitive(TRANSITIVE));

/// Declared distributions (canonical names): per manifest, by the directory it governs, and
/// those the build recipes install anywhere (`pip install a b` in a Dockerfile, CI workflow or
/// script).
struct Declared {
    manifests: Vec<(String, BTreeSet<String>)>,
    installed: BTreeSet<String>,
    /// The projects' own distribution names (an import of one is local; they bring in nothing
    /// as a dependency would: `requests` itself does not provide `urllib3` to `requests`).
    own: BTreeSet<String>,
}

impl Declared {
    /// What a file at `path` may import: the manifests of its directory and those above it.
    /// None when no manifest governs it and no recipe installs anything.
    /// Also the directory of the nearest manifest (where a fix adds the dependency).
    /// Sets are built once per combination of governing manifests (a directory's files share
    /// one), so the work stays linear in files plus declared names.
    fn for_file(
        &self,
        path: &str,
        cache: &mut std::collections::HashMap<Vec<usize>, std::rc::Rc<BTreeSet<String>>>,
    ) -> Option<(std::rc::Rc<BTreeSet<String>>, String)> {
        let mut governing = Vec::new();
        let mut nearest = String::new();
        for (i, (d, _)) in self.manifests.iter().enumerate() {
            if d.is_empty() || path.strip_prefix(d.as_str()).is_some_and(|r| r.starts_with('/')) {
                governing.push(i);
                if d.len() > nearest.len() {
                    nearest = d.clone();
                }
            }
        }
        if governing.is_empty() && self.installed.is_empty() {
            return None;
        }
        let set = cache
            .entry(governing)
            .or_insert_with_key(|g| {
                let mut out = self.installed.clone();
                for &i in g {
                    out.extend(self.manifests[i].1.iter().cloned());
                }
                std::rc::Rc::new(out)
            })
            .clone();
        Some((set, nearest))
    }
}

fn declared(ws: &Workspace<'_>) -> Declared {
    let mut manifests = Vec::new();
    let mut installed = BTreeSet::new();
    let mut own = BTreeSet::new();
    for (path, text) in ws.files.iter().map(|(p, t)| (p.as_str(), *t)) {
        if super::vendored(path) {
            continue;
        }
        let mut found = false;
        let mut dists = BTreeSet::new();
        let name = base(path);
        let in_requirements_dir = base(dir(path)).starts_with("requirements");
        if (name.starts_with("requirements") || in_requirements_dir || name == "constraints.txt")
            && (name.ends_with(".txt") || name.ends_with(".in"))
        {
            found = true;
            dists.extend(text.lines().filter_map(requirement_line));
        } else if name == "pyproject.toml" {
            found = true;
            pyproject(text, &mut dists, &mut own);
        } else if name == "Pipfile" {
            found = true;
            if let Ok(v) = toml::from_str::<toml::Table>(text) {
                for section in ["packages", "dev-packages"] {
                    if let Some(t) = v.get(section).and_then(|s| s.as_table()) {
                        dists.extend(t.keys().map(|k| canonical(k)));
                    }
                }
            }
        } else if name == "setup.cfg" {
            found |= text.contains("install_requires");
            setup_cfg(text, &mut dists);
        } else if name == "setup.py" {
            found = true;
            setup_py(text, &mut dists);
        } else if name == "environment.yml" || name == "environment.yaml" {
            found = true;
            for l in text.lines() {
                let item = l.trim_start();
                if let Some(spec) = item.strip_prefix("- ") {
                    dists.extend(requirement_line(spec.trim_matches(|c| c == '"' || c == '\'')));
                    // conda specs: name=version
                    if let Some(n) = spec.split(['=', ' ', '<', '>']).next() {
                        dists.insert(canonical(n));
                    }
                }
            }
        } else if super::is_recipe(path) {
            installed.extend(
                super::installs(text, &["pip", "pip3", "pipx", "uv"])
                    .iter()
                    .filter_map(|w| requirement_line(w)),
            );
        }
        if found {
            // requirements/base.txt governs the directory above requirements/
            let governs = if in_requirements_dir { dir(dir(path)) } else { dir(path) };
            manifests.push((governs.to_owned(), dists));
        }
    }
    // a project that lists itself (`requests[socks]` in its test group) declares its extras, not
    // what it depends on: its own name brings in nothing here
    for (_, dists) in &mut manifests {
        dists.retain(|d| !own.contains(d));
    }
    installed.retain(|d| !own.contains(d));
    Declared { manifests, installed, own }
}

/// The distribution a requirements line names (PEP 508, pip options, `#egg=`, `name @ url`).
fn requirement_line(line: &str) -> Option<String> {
    let line = line.split(" #").next().unwrap_or(line).trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    if let Some(egg) = line.split("#egg=").nth(1) {
        return Some(canonical(egg.split(['&', '[', ' ']).next().unwrap_or(egg)));
    }
    if line.starts_with('-') || line.contains("://") && !line.contains(" @ ") {
        return None;
    }
    let name: String =
        line.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    (!name.is_empty()).then(|| canonical(&name))
}

fn pyproject(text: &str, dists: &mut BTreeSet<String>, own: &mut BTreeSet<String>) {
    let Ok(v) = toml::from_str::<toml::Table>(text) else { return };
    let strings = |v: Option<&toml::Value>, dists: &mut BTreeSet<String>| {
        for s in v.and_then(|v| v.as_array()).into_iter().flatten().filter_map(|x| x.as_str()) {
            dists.extend(requirement_line(s));
        }
    };
    let tables = |v: Option<&toml::Value>, dists: &mut BTreeSet<String>| {
        for t in v.and_then(|v| v.as_table()).into_iter() {
            dists.extend(t.keys().filter(|k| *k != "python").map(|k| canonical(k)));
        }
    };
    if let Some(project) = v.get("project") {
        strings(project.get("dependencies"), dists);
        for (_, group) in
            project.get("optional-dependencies").and_then(|g| g.as_table()).into_iter().flatten()
        {
            strings(Some(group), dists);
        }
        // the project's own package
        if let Some(name) = project.get("name").and_then(|n| n.as_str()) {
            own.insert(canonical(name));
        }
    }
    for (_, group) in v.get("dependency-groups").and_then(|g| g.as_table()).into_iter().flatten() {
        strings(Some(group), dists);
    }
    strings(v.get("build-system").and_then(|b| b.get("requires")), dists);
    if let Some(tool) = v.get("tool") {
        if let Some(poetry) = tool.get("poetry") {
            tables(poetry.get("dependencies"), dists);
            tables(poetry.get("dev-dependencies"), dists);
            for (_, g) in poetry.get("group").and_then(|g| g.as_table()).into_iter().flatten() {
                tables(g.get("dependencies"), dists);
            }
            if let Some(name) = poetry.get("name").and_then(|n| n.as_str()) {
                own.insert(canonical(name));
            }
        }
        for (_, group) in tool
            .get("pdm")
            .and_then(|p| p.get("dev-dependencies"))
            .and_then(|g| g.as_table())
            .into_iter()
            .flatten()
        {
            strings(Some(group), dists);
        }
        strings(tool.get("uv").and_then(|u| u.get("dev-dependencies")), dists);
    }
}

fn setup_cfg(text: &str, dists: &mut BTreeSet<String>) {
    let mut in_list = false;
    for l in text.lines() {
        let t = l.trim();
        if let Some((key, value)) = t.split_once('=')
            && !l.starts_with([' ', '\t'])
        {
            let key = key.trim();
            in_list = key == "install_requires" || key == "tests_require" || key.ends_with("_require");
            if in_list {
                dists.extend(value.split(';').next().and_then(requirement_line));
            }
            continue;
        }
        if t.starts_with('[') {
            // [options.extras_require] lists `extra = reqs` lines
            in_list = t == "[options.extras_require]";
            continue;
        }
        if in_list && l.starts_with([' ', '\t']) {
            dists.extend(requirement_line(t));
        } else if in_list && t.contains('=') {
            dists.extend(t.split_once('=').and_then(|(_, v)| requirement_line(v)));
        }
    }
}

/// Every quoted string inside `install_requires=[...]`, `extras_require={...}` and the like.
fn setup_py(text: &str, dists: &mut BTreeSet<String>) {
    for key in ["install_requires", "tests_require", "extras_require", "setup_requires"] {
        let mut rest = text;
        while let Some(at) = rest.find(key) {
            rest = &rest[at + key.len()..];
            let Some(open) = rest.find(['[', '{', '(']) else { break };
            let (o, c) = match rest.as_bytes()[open] {
                b'[' => ('[', ']'),
                b'{' => ('{', '}'),
                _ => ('(', ')'),
            };
            let mut depth = 0usize;
            let mut end = rest.len();
            for (i, ch) in rest[open..].char_indices() {
                if ch == o {
                    depth += 1;
                } else if ch == c {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
            }
            let body = &rest[open..end];
            for quoted in body.split(['"', '\'']).skip(1).step_by(2) {
                dists.extend(requirement_line(quoted));
            }
            rest = &rest[end..];
        }
    }
}

/// Whether `module` (a top-level import) is provided by the declared distributions.
fn provided(
    module: &str,
    declared: &BTreeSet<String>,
    pypi: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let m = canonical(module);
    if declared.contains(&m) {
        return true;
    }
    // a declared name starting with `prefix` (a sorted-set range: no scan of every name)
    let starts =
        |prefix: &str| declared.range(prefix.to_owned()..).next().is_some_and(|d| d.starts_with(prefix));
    let via_map = pypi.and_then(|map| map.get(module)).map(|d| canonical(d));
    if let Some(d) = &via_map
        && (declared.contains(d) || starts(&format!("{d}_")))
    {
        return true;
    }
    // python-dateutil, pyserial, django-cors-headers style names; namespace packages (google-*)
    let forms =
        [format!("python_{m}"), format!("py{m}"), format!("py_{m}"), format!("{m}_python"), format!("{m}py")];
    if forms.iter().any(|f| declared.contains(f)) || starts(&format!("{m}_")) {
        return true;
    }
    ROWS.iter().any(|(dist, brings)| {
        declared.contains(*dist) && brings.iter().any(|b| canonical(b) == m || Some(canonical(b)) == via_map)
    })
}

/// Names the workspace itself provides: every directory and `.py` / extension-module stem.
fn local_names(ws: &Workspace<'_>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for p in &ws.paths {
        let parts: Vec<&str> = p.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if i + 1 < parts.len() {
                names.insert((*part).to_owned());
            } else if let Some(stem) = part.strip_suffix(".py").or_else(|| part.strip_suffix(".pyi")) {
                names.insert(stem.to_owned());
            } else if part.ends_with(".so") || part.ends_with(".pyd") {
                names.insert(part.split('.').next().unwrap_or(part).to_owned());
            }
        }
    }
    names
}

/// Module-level imports of one file, the ones a run needs: (line, module, the statement). An
/// import in a block is not one: under `try:` / `except ImportError:`, `if TYPE_CHECKING:` or a
/// version test it is optional, and in a function or class body it is often a lazy, optional one
/// (`def to_frame(): import pandas`) or of a module a test creates at run time.
fn imports(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut in_string: Option<&str> = None;
    let mut paren_depth = 0usize;
    for (n, raw) in lines(text) {
        let code = raw.split('#').next().unwrap_or(raw);
        if let Some(q) = in_string {
            if raw.contains(q) {
                in_string = None;
            }
            continue;
        }
        for q in ["\"\"\"", "'''"] {
            if raw.matches(q).count() % 2 == 1 {
                in_string = Some(q);
            }
        }
        let trimmed = code.trim();
        if trimmed.is_empty() {
            continue;
        }
        // continuation lines of a bracketed expression are not statements
        let was_continued = paren_depth > 0;
        for c in code.chars() {
            match c {
                '(' | '[' | '{' => paren_depth += 1,
                ')' | ']' | '}' => paren_depth = paren_depth.saturating_sub(1),
                _ => {}
            }
        }
        let indented = raw.starts_with([' ', '\t']);
        if was_continued
            || indented
            || in_string.is_some() && !trimmed.starts_with("import") && !trimmed.starts_with("from")
        {
            continue;
        }
        let modules: Vec<&str> = if let Some(rest) = trimmed.strip_prefix("import ") {
            rest.split(',').filter_map(|m| m.split_whitespace().next()).collect()
        } else if let Some(rest) = trimmed.strip_prefix("from ") {
            let Some(module) = rest.split_whitespace().next() else { continue };
            if rest.split_whitespace().nth(1).is_none_or(|w| w != "import") {
                continue;
            }
            vec![module]
        } else {
            continue;
        };
        for m in modules {
            let top = m.split('.').next().unwrap_or(m);
            if top.is_empty() || !top.chars().all(|c| c.is_alphanumeric() || c == '_') {
                continue; // relative (`from . import`) or not an import at all
            }
            out.push((n, top.to_owned(), trimmed.to_owned()));
        }
    }
    out
}

pub(super) fn check(
    ws: &Workspace<'_>,
    patterns: &PatternSet,
    checked: &mut Checked,
) -> Option<Vec<Missing>> {
    let sources: Vec<(&str, &str)> = ws.sources(&[".py"]).collect();
    if sources.is_empty() {
        return None;
    }
    let declared = declared(ws);
    let declared_own = declared.own.clone();
    if declared.manifests.is_empty() && declared.installed.is_empty() {
        checked
            .skipped
            .push("python: no dependency manifest (requirements.txt, pyproject.toml, ...)".to_owned());
        return None;
    }
    let mut ungoverned = 0;
    let mut cache = std::collections::HashMap::new();
    let pypi = patterns.map("pypi");
    let local = local_names(ws);
    let mut out = Vec::new();
    for (path, text) in sources {
        // task runners bring their own tools
        if matches!(base(path), "noxfile.py" | "fabfile.py" | "setup.py" | "conf.py") {
            continue;
        }
        let Some((declared, root)) = declared.for_file(path, &mut cache) else {
            ungoverned += 1;
            continue;
        };
        if super::aside(path, &root) {
            continue;
        }
        checked.files += 1;
        for (line, module, statement) in imports(text) {
            checked.imports += 1;
            if module.starts_with('_') && module != "__future__"
                || STDLIB.split_whitespace().any(|s| s == module)
                || TOOLING.split_whitespace().any(|s| s == module)
                || local.contains(&module)
                || declared_own.contains(&canonical(&module))
                || provided(&module, &declared, pypi)
            {
                continue;
            }
            let dist = pypi.and_then(|m| m.get(&module)).cloned().unwrap_or_else(|| module.clone());
            out.push(Missing {
                check: "python-import",
                file: path.to_owned(),
                line,
                reason: format!("`{statement}` but no declared distribution provides {module} ({dist})"),
                output: format!(
                    "Traceback (most recent call last):\n  File \"{path}\", line {line}, in <module>\n    {statement}\nModuleNotFoundError: No module named '{module}'\n"
                ),
                name: module,
                tool: "python",
                root: root.clone(),
            });
        }
    }
    if ungoverned > 0 {
        checked.skipped.push(format!("python: {ungoverned} files under no dependency manifest"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_and_relative_imports_are_optional() {
        let src = "import os, yaml\nfrom . import sibling\ntry:\n    import ujson as json\nexcept ImportError:\n    import json\nif TYPE_CHECKING:\n    from mypy_boto3 import S3\ndef f():\n    import requests\n\"\"\"\nimport notreal\n\"\"\"\nfrom flask import (\n    Flask,\n)\n";
        let got: Vec<(usize, String)> = imports(src).into_iter().map(|(l, m, _)| (l, m)).collect();
        // `import requests` inside `def f()` is a lazy import: not a run's requirement
        assert_eq!(got, vec![(1, "os".into()), (1, "yaml".into()), (14, "flask".into())]);
    }

    #[test]
    fn requirement_lines() {
        for (line, want) in [
            ("PyYAML>=6.0 ; python_version > '3'", Some("pyyaml")),
            ("requests[socks]==2.31", Some("requests")),
            ("-r base.txt", None),
            ("-e git+https://github.com/x/y.git#egg=my_pkg", Some("my_pkg")),
            ("django-cors-headers~=4.0  # cors", Some("django_cors_headers")),
            ("torch @ https://example.com/torch.whl", Some("torch")),
            ("# a comment", None),
        ] {
            assert_eq!(requirement_line(line).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn distributions_provide_their_imports() {
        let declared: BTreeSet<String> =
            ["pyyaml", "python_dateutil", "google_cloud_storage", "requests", "opencv_python_headless"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
        let set = PatternSet::seed().expect("seed");
        let pypi = set.map("pypi");
        for m in ["yaml", "dateutil", "google", "urllib3", "requests", "cv2"] {
            assert!(provided(m, &declared, pypi), "{m}");
        }
        for m in ["sqlalchemy", "flask", "jwt"] {
            assert!(!provided(m, &declared, pypi), "{m}");
        }
    }
}
