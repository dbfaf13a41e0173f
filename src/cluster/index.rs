//! The per-kind indexes behind [`super::Caches`], kubert-style: the watcher
//! task owns the only [`Writer`] of a kind and turns each watcher event into
//! one `apply` or `delete` on the live index, in place, under a short write
//! lock. Nothing is cloned per event: the cost of an event does not grow
//! with the size of the cache.
//!
//! A re-list follows kube-rs' `reflector::store::Writer::apply_watcher_event`:
//! `Init` starts a fresh index beside the live one, `InitApply` fills it, and
//! `InitDone` swaps it in under the write lock (the old one is dropped after
//! the lock is released). A reader sees the whole old list or the whole new
//! one, never a half-listed cache, and an object the new list lacks is gone.
//!
//! Why not a `reflector::Store` itself: it keeps the watched object as-is in
//! one map per kind, keyed by `ObjectRef`. We keep what admission reads (a
//! parsed and validated `Instrumentation`, a defaulted `Collector`, a
//! namespace's labels and annotations), leave out what does not parse, and
//! need each kind grouped by namespace with names in order, so that "the
//! namespace's only Instrumentation" is one hash lookup, not a scan and sort
//! of every Instrumentation. A `Store` would need that index beside it,
//! updated and swapped on its own, and readers could see the two disagree.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

/// One kind's objects, updated one object at a time.
pub trait Index: Default {
    type Key;
    type Value;
    /// Inserts or replaces the object at `key`.
    fn apply(&mut self, key: Self::Key, value: Arc<Self::Value>);
    /// Removes the object at `key`, if any.
    fn delete(&mut self, key: &Self::Key);
    /// Objects held.
    fn len(&self) -> usize;
}

/// A cluster-scoped kind: name → object.
#[derive(Debug)]
pub struct ByName<V> {
    objects: HashMap<String, Arc<V>>,
}

/// A namespaced kind: namespace → name → object, each namespace's names in
/// order. An emptied namespace is dropped, so `len` of the outer map is the
/// number of namespaces holding at least one object.
#[derive(Debug)]
pub struct ByNamespace<V> {
    namespaces: HashMap<String, BTreeMap<String, Arc<V>>>,
    len: usize,
}

/// What one watcher event does to an index, its object already converted
/// (see `super::watch::update`).
#[derive(Debug)]
pub enum Update<K, V> {
    /// A (re-)list starts.
    Init,
    /// An object of the list.
    InitApply(K, V),
    /// The list is complete: it replaces the live index.
    InitDone,
    /// An object created or changed.
    Apply(K, V),
    /// An object deleted, or changed into one that is left out.
    Delete(K),
}

/// One kind as readers see it.
#[derive(Debug, Default)]
pub struct Store<I> {
    live: RwLock<I>,
    /// Set at the first `InitDone`; never cleared (a re-list keeps serving
    /// from the last list until it is done).
    ready: AtomicBool,
    /// Bumped by every write (a list swapped in, an object applied or
    /// deleted): a reader that saw one value and sees another knows the
    /// index may have changed since.
    revision: AtomicU64,
}

/// The single writer of a [`Store`], owned by its watcher task.
#[derive(Debug)]
pub struct Writer<I> {
    store: Arc<Store<I>>,
    /// A re-list in progress, not yet visible.
    relist: Option<I>,
}

// === impl ByName ===

impl<V> Default for ByName<V> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
        }
    }
}

impl<V> ByName<V> {
    pub fn get(&self, name: &str) -> Option<&Arc<V>> {
        self.objects.get(name)
    }
}

impl<V> Index for ByName<V> {
    type Key = String;
    type Value = V;

    fn apply(&mut self, key: String, value: Arc<V>) {
        self.objects.insert(key, value);
    }

    fn delete(&mut self, key: &String) {
        self.objects.remove(key);
    }

    fn len(&self) -> usize {
        self.objects.len()
    }
}

// === impl ByNamespace ===

impl<V> Default for ByNamespace<V> {
    fn default() -> Self {
        Self {
            namespaces: HashMap::new(),
            len: 0,
        }
    }
}

impl<V> ByNamespace<V> {
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<V>> {
        self.namespaces.get(namespace)?.get(name)
    }

    /// The objects of `namespace`, sorted by name: one hash lookup, then only
    /// that namespace's own objects.
    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = &Arc<V>> {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// Every object with its namespace and name, namespaces in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Arc<V>)> {
        self.namespaces.iter().flat_map(|(ns, names)| {
            names
                .iter()
                .map(move |(name, v)| (ns.as_str(), name.as_str(), v))
        })
    }

    /// How many objects `namespace` holds, without visiting them.
    pub fn count_in(&self, namespace: &str) -> usize {
        self.namespaces.get(namespace).map_or(0, BTreeMap::len)
    }
}

impl<V> Index for ByNamespace<V> {
    /// `(namespace, name)`.
    type Key = (String, String);
    type Value = V;

    fn apply(&mut self, (namespace, name): (String, String), value: Arc<V>) {
        if self
            .namespaces
            .entry(namespace)
            .or_default()
            .insert(name, value)
            .is_none()
        {
            self.len += 1;
        }
    }

    fn delete(&mut self, (namespace, name): &(String, String)) {
        let Some(names) = self.namespaces.get_mut(namespace) else {
            return;
        };
        if names.remove(name).is_some() {
            self.len -= 1;
        }
        if names.is_empty() {
            self.namespaces.remove(namespace);
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

// === impl Store ===

impl<I: Index> Store<I> {
    /// The live index. Hold the guard only for a lookup: the writer waits
    /// for it.
    pub fn read(&self) -> RwLockReadGuard<'_, I> {
        // A panic while the lock was held leaves a consistent index: every
        // write is a single insert, remove or swap.
        self.live.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// True once the first list is complete.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// How many writes the index has had.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    fn write(&self, f: impl FnOnce(&mut I)) {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut live);
        self.revision.fetch_add(1, Ordering::SeqCst);
    }
}

// === impl Writer ===

impl<I: Index> Writer<I> {
    pub fn new(store: Arc<Store<I>>) -> Self {
        Self {
            store,
            relist: None,
        }
    }

    /// Applies one event.
    pub fn update(&mut self, update: Update<I::Key, I::Value>) {
        match update {
            Update::Init => self.relist = Some(I::default()),
            Update::InitApply(key, value) => {
                self.relist
                    .get_or_insert_with(I::default)
                    .apply(key, Arc::new(value));
            }
            Update::InitDone => {
                let mut fresh = self.relist.take().unwrap_or_default();
                self.store.write(|live| std::mem::swap(live, &mut fresh));
                // `fresh` is now the old list, dropped outside the lock.
                drop(fresh);
                self.store.ready.store(true, Ordering::SeqCst);
            }
            Update::Apply(key, value) => {
                let value = Arc::new(value);
                self.store.write(|live| live.apply(key, value));
            }
            Update::Delete(key) => self.store.write(|live| live.delete(&key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Inst = ByNamespace<&'static str>;

    fn key(ns: &str, name: &str) -> (String, String) {
        (ns.to_string(), name.to_string())
    }

    fn names(index: &Inst, ns: &str) -> Vec<&'static str> {
        index.in_namespace(ns).map(|v| **v).collect()
    }

    fn writer() -> (Arc<Store<Inst>>, Writer<Inst>) {
        let store = Arc::new(Store::default());
        (store.clone(), Writer::new(store))
    }

    fn listed(w: &mut Writer<Inst>, objects: &[(&str, &'static str)]) {
        w.update(Update::Init);
        for (ns, name) in objects {
            w.update(Update::InitApply(key(ns, name), *name));
        }
        w.update(Update::InitDone);
    }

    #[test]
    fn apply_and_delete_keep_each_namespace_sorted_and_counted() {
        let mut i = Inst::default();
        for (ns, name) in [("b", "z"), ("a", "y"), ("b", "x"), ("b", "y")] {
            i.apply(key(ns, name), Arc::new(name));
        }
        assert_eq!(names(&i, "b"), ["x", "y", "z"]);
        assert_eq!(names(&i, "a"), ["y"]);
        assert_eq!(i.len(), 4);
        // A replace is not a second object.
        i.apply(key("b", "x"), Arc::new("x"));
        assert_eq!(i.len(), 4);
        i.delete(&key("b", "y"));
        i.delete(&key("b", "missing"));
        i.delete(&key("nowhere", "y"));
        assert_eq!(names(&i, "b"), ["x", "z"]);
        assert_eq!(i.len(), 3);
        i.delete(&key("a", "y"));
        assert!(names(&i, "a").is_empty());
        assert_eq!(i.count_in("a"), 0);
        assert!(
            !i.namespaces.contains_key("a"),
            "an emptied namespace is dropped"
        );
        assert_eq!(i.get("b", "z").map(|v| **v), Some("z"));
        assert_eq!(i.get("a", "z"), None);
    }

    /// "The namespace's only Instrumentation" reads that namespace alone:
    /// thousands elsewhere do not change the answer, and two in it give both,
    /// by name, as the sort over the whole map did.
    #[test]
    fn the_only_object_of_a_namespace_is_found_in_its_own_entry() {
        let mut i = Inst::default();
        for n in 0..2_000 {
            i.apply(key(&format!("ns-{n}"), "other"), Arc::new("other"));
        }
        assert_eq!(i.count_in("shop"), 0);
        i.apply(key("shop", "python"), Arc::new("python"));
        assert_eq!(i.count_in("shop"), 1);
        assert_eq!(names(&i, "shop"), ["python"]);
        i.apply(key("shop", "java"), Arc::new("java"));
        assert_eq!(names(&i, "shop"), ["java", "python"]);
        i.delete(&key("shop", "python"));
        assert_eq!(names(&i, "shop"), ["java"]);
        assert_eq!(i.len(), 2_001);
    }

    #[test]
    fn a_relist_is_invisible_until_done_then_replaces_the_whole_index() {
        let (store, mut w) = writer();
        assert!(!store.is_ready());
        listed(&mut w, &[("shop", "a"), ("shop", "b"), ("web", "c")]);
        assert!(store.is_ready());
        assert_eq!(store.len(), 3);

        // Re-list: `b` and `web/c` were deleted while the watch was away,
        // `d` created.
        w.update(Update::Init);
        w.update(Update::InitApply(key("shop", "a"), "a"));
        w.update(Update::InitApply(key("shop", "d"), "d"));
        assert_eq!(
            names(&store.read(), "shop"),
            ["a", "b"],
            "half a list is not shown"
        );
        assert_eq!(names(&store.read(), "web"), ["c"]);
        assert!(store.is_ready(), "a re-list keeps serving the last list");
        w.update(Update::InitDone);
        assert_eq!(names(&store.read(), "shop"), ["a", "d"]);
        assert!(
            names(&store.read(), "web").is_empty(),
            "dropped by the re-list"
        );
        assert_eq!(store.len(), 2);

        // Live events after it apply in place.
        w.update(Update::Apply(key("web", "e"), "e"));
        w.update(Update::Delete(key("shop", "a")));
        w.update(Update::Delete(key("shop", "never-there")));
        assert_eq!(names(&store.read(), "shop"), ["d"]);
        assert_eq!(names(&store.read(), "web"), ["e"]);

        // An empty re-list empties the cache.
        listed(&mut w, &[]);
        assert_eq!(store.len(), 0);
        // `InitApply` without `Init` still starts a buffer, and `InitDone`
        // without one swaps in an empty list, as kube-rs' store does.
        w.update(Update::InitApply(key("x", "y"), "y"));
        assert_eq!(store.len(), 0);
        w.update(Update::InitDone);
        assert_eq!(names(&store.read(), "x"), ["y"]);
        w.update(Update::InitDone);
        assert_eq!(store.len(), 0);
    }

    /// An event changes one entry in place: the values of the others are the
    /// same allocations before and after, and a value a reader holds stays
    /// valid after it is replaced or deleted.
    #[test]
    fn an_event_touches_only_its_own_entry() {
        let (store, mut w) = writer();
        listed(&mut w, &[("shop", "a"), ("shop", "b")]);
        let a = store.read().get("shop", "a").cloned();
        let b = store.read().get("shop", "b").cloned();
        w.update(Update::Apply(key("shop", "b"), "b2"));
        w.update(Update::Apply(key("web", "c"), "c"));
        let a_after = store.read().get("shop", "a").cloned();
        assert!(matches!((&a, &a_after), (Some(x), Some(y)) if Arc::ptr_eq(x, y)));
        assert_eq!(store.read().get("shop", "b").map(|v| **v), Some("b2"));
        w.update(Update::Delete(key("shop", "a")));
        assert_eq!(a.as_deref(), Some(&"a"));
        assert_eq!(b.as_deref(), Some(&"b"));
    }

    /// Readers racing a writer that re-lists over and over between two lists
    /// of 200 objects each see one list or the other, whole.
    #[test]
    fn readers_never_see_a_half_listed_cache() {
        let (store, mut w) = writer();
        let names: Vec<String> = (0..200).map(|i| format!("o-{i:03}")).collect();
        let relist = |w: &mut Writer<Inst>, ns: &str| {
            w.update(Update::Init);
            for name in &names {
                w.update(Update::InitApply(key(ns, name), "x"));
            }
            w.update(Update::InitDone);
        };
        relist(&mut w, "a");
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let store = store.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut seen = 0usize;
                    while !done.load(Ordering::SeqCst) {
                        let live = store.read();
                        let (a, b) = (live.count_in("a"), live.count_in("b"));
                        assert!(
                            (a, b) == (200, 0) || (a, b) == (0, 200),
                            "half a list: {a} + {b}"
                        );
                        assert_eq!(live.len(), 200);
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        for round in 0..200 {
            relist(&mut w, if round % 2 == 0 { "b" } else { "a" });
        }
        done.store(true, Ordering::SeqCst);
        for r in readers {
            assert!(r.join().is_ok_and(|seen| seen > 0));
        }
    }

    #[test]
    fn cluster_scoped_objects_by_name() {
        let store: Arc<Store<ByName<u8>>> = Arc::new(Store::default());
        let mut w = Writer::new(store.clone());
        w.update(Update::Init);
        w.update(Update::InitApply("shop".into(), 1));
        w.update(Update::InitApply("web".into(), 2));
        assert!(store.read().get("shop").is_none());
        w.update(Update::InitDone);
        assert_eq!(store.read().get("shop").map(|v| **v), Some(1));
        w.update(Update::Apply("shop".into(), 3));
        w.update(Update::Delete("web".into()));
        assert_eq!(store.read().get("shop").map(|v| **v), Some(3));
        assert!(store.read().get("web").is_none());
        assert_eq!(store.len(), 1);
    }
}
