//! Outputs of tools and variants the development corpus does not hold: each must land in the
//! right category with the right key. Written from the tools' real output formats.

use std::sync::LazyLock;

use helix_healer::analyze::{Request, analyze};
use helix_healer::patterns::PatternSet;

static PATTERNS: LazyLock<PatternSet> = LazyLock::new(|| PatternSet::seed().expect("seed"));

fn check(name: &str, output: &str, category: &str, key: Option<&str>) -> Option<String> {
    let a = analyze(&Request { output, ..Request::default() }, &PATTERNS);
    let Some(i) = a.primary else { return Some(format!("{name}: no diagnostic")) };
    let d = &a.diagnostics[i];
    let mut errs = Vec::new();
    if d.category.as_str() != category {
        errs.push(format!("category {} want {category}", d.category.as_str()));
    }
    if key.is_some() && d.key.as_deref() != key {
        errs.push(format!("key {:?} want {key:?}", d.key));
    }
    let all: Vec<String> =
        a.diagnostics.iter().map(|d| format!("{}={}/{}", d.message, d.category.as_str(), d.rank)).collect();
    (!errs.is_empty()).then(|| format!("{name}: {} [{}] all: {all:?}", errs.join(", "), d.message))
}

#[test]
fn unseen_tools_and_variants() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "pytest collection error",
            "==================================== ERRORS ====================================\n_____________________ ERROR collecting tests/test_api.py ______________________\nImportError while importing test module '/w/tests/test_api.py'.\nHint: make sure your test modules/packages have valid Python names.\nTraceback:\n/usr/lib/python3.11/importlib/__init__.py:126: in import_module\n    return _bootstrap._gcd_import(name[level:], package, level)\ntests/test_api.py:3: in <module>\n    import httpx\nE   ModuleNotFoundError: No module named 'httpx'\n=========================== short test summary info ============================\nERROR tests/test_api.py\n!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!\n",
            "missing_dependency",
            Some("httpx"),
        ),
        (
            "pytest assertion",
            "    def test_total():\n>       assert total([1, 2]) == 4\nE       assert 3 == 4\nE        +  where 3 = total([1, 2])\n\ntests/test_calc.py:7: AssertionError\n=========================== short test summary info ============================\nFAILED tests/test_calc.py::test_total - assert 3 == 4\n========================= 1 failed, 3 passed in 0.12s ==========================\n",
            "test_failure",
            None,
        ),
        (
            "unittest",
            "F\n======================================================================\nFAIL: test_add (test_m.TestM.test_add)\n----------------------------------------------------------------------\nTraceback (most recent call last):\n  File \"/w/test_m.py\", line 6, in test_add\n    self.assertEqual(add(1, 2), 4)\nAssertionError: 3 != 4\n\n----------------------------------------------------------------------\nRan 1 test in 0.000s\n\nFAILED (failures=1)\n",
            "test_failure",
            None,
        ),
        (
            "python 3.12 name error with suggestion",
            "Traceback (most recent call last):\n  File \"/w/x.py\", line 4, in <module>\n    print(totl)\n          ^^^^\nNameError: name 'totl' is not defined. Did you mean: 'total'?\n",
            "unresolved_symbol",
            Some("totl"),
        ),
        (
            "python requests connection refused",
            "requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost', port=8000): Max retries exceeded with url: /api (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f2b>: Failed to establish a new connection: [Errno 111] Connection refused'))\n",
            "transient",
            Some("8000"),
        ),
        (
            "python recursion",
            "Traceback (most recent call last):\n  File \"/w/r.py\", line 3, in f\n    return f(n)\n  [Previous line repeated 996 more times]\nRecursionError: maximum recursion depth exceeded\n",
            "resource_exhausted",
            None,
        ),
        (
            "cargo test panic",
            "running 1 test\ntest tests::adds ... FAILED\n\nfailures:\n\n---- tests::adds stdout ----\n\nthread 'tests::adds' panicked at src/lib.rs:10:9:\nassertion `left == right` failed\n  left: 3\n right: 4\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\nfailures:\n    tests::adds\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
            "test_failure",
            None,
        ),
        (
            "rust borrow",
            "error[E0382]: borrow of moved value: `v`\n --> src/main.rs:4:20\n  |\n2 |     let v = vec![1];\n  |         - move occurs because `v` has type `Vec<i32>`\n3 |     let w = v;\n  |             - value moved here\n4 |     println!(\"{:?}\", v);\n  |                    ^ value borrowed here after move\n\nerror: aborting due to 1 previous error\n",
            "ownership_error",
            Some("v"),
        ),
        (
            "rust undeclared crate",
            "error[E0433]: failed to resolve: use of unresolved module or unlinked crate `rand`\n --> src/main.rs:2:13\n  |\n2 |     let x = rand::random::<u8>();\n  |             ^^^^ use of unresolved module or unlinked crate `rand`\n",
            "missing_dependency",
            Some("rand"),
        ),
        (
            "go undefined",
            "# example.com/app\n./main.go:7:2: undefined: fooBar\n",
            "unresolved_symbol",
            Some("fooBar"),
        ),
        (
            "go missing module",
            "main.go:4:2: no required module provides package github.com/gorilla/mux; to add it:\n\tgo get github.com/gorilla/mux\n",
            "missing_dependency",
            Some("github.com/gorilla/mux"),
        ),
        (
            "go test",
            "--- FAIL: TestSum (0.00s)\n    sum_test.go:12: Sum(2, 2) = 5; want 4\nFAIL\nFAIL\texample.com/sum\t0.003s\nFAIL\n",
            "test_failure",
            None,
        ),
        (
            "go nil pointer",
            "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f2a2]\n\ngoroutine 1 [running]:\nmain.main()\n\t/home/u/app/main.go:9 +0x22\nexit status 2\n",
            "runtime_error",
            None,
        ),
        (
            "tsc",
            "src/index.ts(4,13): error TS2304: Cannot find name 'fetchUser'.\n\nFound 1 error in src/index.ts:4\n",
            "unresolved_symbol",
            Some("fetchUser"),
        ),
        (
            "tsc module",
            "src/db.ts:1:20 - error TS2307: Cannot find module 'pg' or its corresponding type declarations.\n\n1 import { Pool } from 'pg';\n                     ~~~~\n\nFound 1 error in src/db.ts:1\n",
            "missing_dependency",
            Some("pg"),
        ),
        (
            "node esm package",
            "node:internal/errors:496\n    ErrorCaptureStackTrace(err);\n    ^\n\nError [ERR_MODULE_NOT_FOUND]: Cannot find package 'zod' imported from /w/src/index.js\n    at new NodeError (node:internal/errors:405:5)\n    at packageResolve (node:internal/modules/esm/resolve:916:9)\n\nNode.js v20.20.2\n",
            "missing_dependency",
            Some("zod"),
        ),
        (
            "node cannot read",
            "/w/app.js:3\nconsole.log(user.name.first);\n                      ^\n\nTypeError: Cannot read properties of undefined (reading 'first')\n    at Object.<anonymous> (/w/app.js:3:23)\n\nNode.js v20.20.2\n",
            "type_error",
            Some("first"),
        ),
        (
            "node econnrefused",
            "Error: connect ECONNREFUSED 127.0.0.1:5432\n    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {\n  errno: -111,\n  code: 'ECONNREFUSED',\n  syscall: 'connect',\n  address: '127.0.0.1',\n  port: 5432\n}\n",
            "transient",
            Some("5432"),
        ),
        (
            "npm 404",
            "npm ERR! code E404\nnpm ERR! 404 Not Found - GET https://registry.npmjs.org/left-padd - Not found\nnpm ERR! 404\nnpm ERR! 404  'left-padd@*' is not in this registry.\n",
            "missing_dependency",
            Some("left-padd"),
        ),
        (
            "npm missing script",
            "npm ERR! Missing script: \"build\"\nnpm ERR!\nnpm ERR! To see a list of scripts, run:\nnpm ERR!   npm run\n",
            "command_not_found",
            Some("build"),
        ),
        (
            "clang header",
            "main.c:1:10: fatal error: 'openssl/ssl.h' file not found\n#include <openssl/ssl.h>\n         ^~~~~~~~~~~~~~~\n1 error generated.\n",
            "missing_dependency",
            Some("openssl/ssl.h"),
        ),
        (
            "clang undeclared",
            "a.c:3:10: error: use of undeclared identifier 'countr'\n  return countr;\n         ^\n1 error generated.\n",
            "unresolved_symbol",
            Some("countr"),
        ),
        (
            "ld undefined reference",
            "/usr/bin/ld: /tmp/cc1.o: in function `main':\nmain.c:(.text+0x13): undefined reference to `sqlite3_open'\ncollect2: error: ld returned 1 exit status\n",
            "missing_dependency",
            Some("sqlite3_open"),
        ),
        (
            "ld missing lib",
            "/usr/bin/ld: cannot find -lssl: No such file or directory\ncollect2: error: ld returned 1 exit status\n",
            "missing_dependency",
            Some("ssl"),
        ),
        (
            "java runtime NPE",
            "Exception in thread \"main\" java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"s\" is null\n\tat App.main(App.java:5)\n",
            "runtime_error",
            None,
        ),
        (
            "java class not found",
            "Exception in thread \"main\" java.lang.NoClassDefFoundError: com/google/gson/Gson\n\tat App.main(App.java:3)\nCaused by: java.lang.ClassNotFoundException: com.google.gson.Gson\n",
            "missing_dependency",
            None,
        ),
        (
            "javac incompatible",
            "Calc.java:4: error: incompatible types: String cannot be converted to int\n        int x = \"5\";\n                ^\n1 error\n",
            "type_error",
            None,
        ),
        ("sh not found", "sh: 1: kubectl: not found\n", "command_not_found", Some("kubectl")),
        ("zsh not found", "zsh: command not found: terraform\n", "command_not_found", Some("terraform")),
        (
            "permission denied script",
            "bash: ./deploy.sh: Permission denied\n",
            "permission_denied",
            Some("./deploy.sh"),
        ),
        (
            "cp missing file",
            "cp: cannot stat 'dist/app.js': No such file or directory\n",
            "file_not_found",
            Some("dist/app.js"),
        ),
        (
            "disk full",
            "tar: out/big.bin: Wrote only 4096 of 10240 bytes\ntar: Exiting with failure status due to previous errors\nwrite /var/lib/docker/tmp/x: no space left on device\n",
            "resource_exhausted",
            None,
        ),
        (
            "anthropic overloaded sdk",
            "anthropic.InternalServerError: Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}\n",
            "transient",
            None,
        ),
        (
            "openai rate limit json",
            "{\"error\": {\"message\": \"Rate limit reached for gpt-4o on requests per min (RPM): Limit 500, Used 500.\", \"type\": \"requests\", \"param\": null, \"code\": \"rate_limit_exceeded\"}}",
            "transient",
            None,
        ),
        (
            "openai 500",
            "HTTP 500\n{\"error\": {\"message\": \"The server had an error while processing your request.\", \"type\": \"server_error\", \"param\": null, \"code\": null}}",
            "transient",
            None,
        ),
        (
            "openai quota",
            "openai.RateLimitError: Error code: 429 - {'error': {'message': 'You exceeded your current quota, please check your plan and billing details.', 'type': 'insufficient_quota', 'param': None, 'code': 'insufficient_quota'}}",
            "resource_exhausted",
            None,
        ),
        (
            "anthropic 503",
            "HTTP/1.1 503 Service Unavailable\n{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}",
            "transient",
            None,
        ),
        (
            "curl dns",
            "curl: (6) Could not resolve host: api.example.internal\n",
            "transient",
            Some("api.example.internal"),
        ),
        (
            "pip no distribution",
            "ERROR: Could not find a version that satisfies the requirement torchx==9.9 (from versions: none)\nERROR: No matching distribution found for torchx==9.9\n",
            "missing_dependency",
            Some("torchx"),
        ),
        ("make only", "make: *** [Makefile:12: build] Error 1\n", "unknown", None),
        // build-tool wrappers and runners without a parser: the real error above the trailer
        (
            "gradle kotlin",
            "> Task :app:compileKotlin FAILED\ne: file:///home/u/app/src/main/kotlin/Main.kt:3:5 Unresolved reference: frobnicate\n\nFAILURE: Build failed with an exception.\n\n* What went wrong:\nExecution failed for task ':app:compileKotlin'.\n> Compilation error. See log for more details\n\nBUILD FAILED in 3s\n",
            "unresolved_symbol",
            Some("frobnicate"),
        ),
        (
            "jest",
            "FAIL src/app.test.js\n  \u{25cf} sum \u{203a} adds\n\n    expect(received).toBe(expected) // Object.is equality\n\n    Expected: 3\n    Received: 4\n\nTest Suites: 1 failed, 1 total\nTests:       1 failed, 1 total\n",
            "test_failure",
            None,
        ),
        (
            "swift",
            "error: no such module 'Alamofire'\nninja: build stopped: subcommand failed.\nmake: *** [Makefile:4: all] Error 1\n",
            "missing_dependency",
            Some("Alamofire"),
        ),
        (
            "ruby require",
            "/usr/lib/ruby/3.1.0/rubygems/core_ext/kernel_require.rb:85:in `require': cannot load such file -- nokogiri (LoadError)\n\tfrom app.rb:1:in `<main>'\n",
            "missing_dependency",
            Some("nokogiri"),
        ),
        (
            "php class",
            "PHP Fatal error:  Uncaught Error: Class \"Monolog\\Logger\" not found in /app/index.php:3\nStack trace:\n#0 {main}\n  thrown in /app/index.php on line 3\n",
            "unresolved_symbol",
            Some("Monolog\\Logger"),
        ),
        (
            "gem unreachable",
            "ERROR:  While executing gem ... (Gem::RemoteFetcher::FetchError)\n    Errno::ECONNREFUSED: Failed to open TCP connection to rubygems.org:443 (Connection refused - connect(2) for \"rubygems.org\" port 443) (https://rubygems.org/specs.4.8.gz)\n",
            "transient",
            None,
        ),
        (
            "maven artifact list",
            "[ERROR] Failed to execute goal on project app: Could not resolve dependencies for project com.x:app:jar:1.0: The following artifacts could not be resolved: org.foo:bar:jar:2.0: Could not find artifact org.foo:bar:jar:2.0 in central (https://repo.maven.apache.org/maven2) -> [Help 1]\n[ERROR] \n[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.\n",
            "missing_dependency",
            Some("org.foo:bar"),
        ),
    ];
    let failures: Vec<String> = cases.iter().filter_map(|(n, o, c, k)| check(n, o, c, *k)).collect();
    let ok = cases.len() - failures.len();
    println!("variants: {ok}/{} right", cases.len());
    for f in &failures {
        println!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} variants wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
