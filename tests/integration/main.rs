//! Integration tests: services in-process on port 0, real HTTP.

mod collector;
mod collector_storage;
mod config_files;
mod dashboard;
mod dashboard_console;
mod dashboard_live;
mod errors;
mod gateway;
mod gateway_endpoints;
mod gateway_redis;
mod gateway_responses;
mod gateway_verdicts;
mod healer;
mod healer_postgres;
mod openapi;
mod orchestrator;
mod panics;
mod shutdown;
mod startup;
mod swagger;
