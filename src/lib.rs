//! aws-workflow-exporter: polls the AWS control plane of data-moving workflows (Step Functions
//! Distributed Map Runs, Transfer Family workflows, AppFlow flows) and serves Prometheus metrics.
//!
//! Data flows one way: config -> targets -> services (AWS calls -> state -> metric
//! families) -> one cached exposition -> HTTP. See docs/design.md.

pub mod app;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod error;
pub mod exposition;
pub mod histogram;
pub mod otlp;
pub mod reload;
pub mod scheduler;
pub mod services;
pub mod shard;
pub mod simulator;
pub mod status;
pub mod tags;
pub mod web;
