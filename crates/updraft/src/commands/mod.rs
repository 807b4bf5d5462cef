pub mod build;
pub mod client;
pub mod invoke;
pub mod logs;
pub mod ls;
pub mod new;
pub mod up;
