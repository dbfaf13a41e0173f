//! Did-you-mean: the distance between a name someone wrote and the names
//! we know, shared by the config's unknown keys and the annotations' and
//! labels' unknown keys, so both suggest alike.

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`:
/// the optimal-string-alignment distance, so `inejct` is one edit from
/// `inject`. Hand-written rather than a crate (`strsim` has it): twenty
/// lines over keys of a few dozen characters do not earn a direct
/// dependency, and its result here must not change with a crate's release.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the dynamic-programming table: two back (for the swap),
    // the previous, and the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::same("inject", "inject", 0)]
    #[case::empty("", "abc", 3)]
    #[case::substitute("java", "jvva", 1)]
    #[case::insert_two("jvm", "java", 2)]
    #[case::swap("inejct", "inject", 1)]
    #[case::delete("probes", "probe", 1)]
    #[case::unicode("prôbes", "probes", 1)]
    fn edit_distance_counts_edits(#[case] a: &str, #[case] b: &str, #[case] want: usize) {
        assert_eq!(edit_distance(a, b), want);
        assert_eq!(edit_distance(b, a), want, "symmetric");
    }
    #[rstest]
    #[case::kitten("kitten", "sitting", 3)]
    #[case::config_key("excludenamespaces", "excludednamespaces", 1)]
    fn edit_distance_counts_longer_edits(#[case] a: &str, #[case] b: &str, #[case] want: usize) {
        assert_eq!(edit_distance(a, b), want);
    }
}
