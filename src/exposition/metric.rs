//! The declaration of a metric: every metric the binary can emit is declared once as a
//! [`MetricDef`]; families are built from those declarations and docs/metrics.md is generated
//! from the same list. Its labels are a type ([`labels!`]), so label values cannot be passed
//! in the wrong order or number.

use std::marker::PhantomData;

/// Declares a [`Metric`] constant: `def!(ID, "name", Kind, LabelSet, "help");`, where
/// `LabelSet` is a struct declared with [`labels!`], or `()` for none.
macro_rules! def {
    ($id:ident, $name:literal, $kind:ident, (), $help:literal) => {
        pub const $id: $crate::exposition::metric::Metric<()> =
            $crate::exposition::metric::Metric::new(
                $name,
                $crate::exposition::metric::MetricKind::$kind,
                $help,
            );
    };
    ($id:ident, $name:literal, $kind:ident, $labels:ident, $help:literal) => {
        pub const $id: $crate::exposition::metric::Metric<$labels<'static>> =
            $crate::exposition::metric::Metric::new(
                $name,
                $crate::exposition::metric::MetricKind::$kind,
                $help,
            );
    };
}
pub(crate) use def;

/// Declares a label set: a struct of `&str` fields, one per label, in the order the series
/// carry them. A family of a `Metric<S>` takes label values only as an `S`, so a wrong order
/// or count of values does not compile.
macro_rules! labels {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($label:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis struct $name<'a> {
            $(pub $label: &'a str,)+
        }

        impl $crate::exposition::metric::LabelSet for $name<'static> {
            const NAMES: &'static [&'static str] = &[$(stringify!($label)),+];
            type Of<'a> = $name<'a>;
        }

        impl $crate::exposition::metric::LabelValues for $name<'_> {
            fn values(&self) -> impl Iterator<Item = &str> {
                [$(self.$label),+].into_iter()
            }

            fn with_slice<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
                f(&[$(self.$label),+])
            }
        }
    };
}
pub(crate) use labels;

/// The labels of a metric, as a type (see [`labels!`]).
pub trait LabelSet {
    /// The label names, in order.
    const NAMES: &'static [&'static str];
    /// The set with its values borrowed for `'a`.
    type Of<'a>: LabelValues;
}

/// Label values in the order of their [`LabelSet::NAMES`].
pub trait LabelValues {
    fn values(&self) -> impl Iterator<Item = &str>;
    /// Calls `f` with the values as a slice on the stack (no allocation per series lookup).
    fn with_slice<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R;
}

/// The labels of a metric without labels.
impl LabelSet for () {
    const NAMES: &'static [&'static str] = &[];
    type Of<'a> = ();
}

impl LabelValues for () {
    fn values(&self) -> impl Iterator<Item = &str> {
        std::iter::empty()
    }

    fn with_slice<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[])
    }
}

/// A declared metric whose series carry the labels of `L`.
#[derive(Debug)]
pub struct Metric<L> {
    pub def: MetricDef,
    labels: PhantomData<fn() -> L>,
}

impl<L: LabelSet> Metric<L> {
    pub const fn new(name: &'static str, kind: MetricKind, help: &'static str) -> Self {
        Self {
            def: MetricDef {
                name,
                kind,
                help,
                labels: L::NAMES,
            },
            labels: PhantomData,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
    Histogram,
    /// A gauge with one series per possible state, 1 for the current one.
    StateSet,
    /// A gauge of constant 1 carrying metadata in labels.
    Info,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gauge => "gauge",
            Self::Counter => "counter",
            Self::Histogram => "histogram",
            Self::StateSet => "gauge (state set)",
            Self::Info => "gauge (info)",
        }
    }
}

/// The declaration of one metric: its name, type, help text and label names.
#[derive(Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}
