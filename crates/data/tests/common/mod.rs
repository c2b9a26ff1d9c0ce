//! What the tests of bad files share: the check that an error is the expected one and names
//! the files it is about.

use std::path::Path;

use genmodels_data::DataError;

/// Asserts that the error's message names `path`.
pub fn assert_names(error: &DataError, path: &Path) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message {message:?} does not name {}",
        path.display()
    );
}

/// Asserts that `result` is an error matching `pattern` (and `guard`, if given) whose message
/// names every one of the paths that follow; the error, for further checks.
macro_rules! assert_error {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(, $path:expr)*) => {{
        let error = $result.unwrap_err();
        assert!(matches!(error, $pattern $(if $guard)?), "{error:?}");
        $($crate::common::assert_names(&error, $path);)*
        error
    }};
}
