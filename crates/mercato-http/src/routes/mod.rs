pub mod auth;
pub mod cart;
pub mod catalog;
pub mod inventory;
pub mod ops;
pub mod orders;
pub mod promotions;
pub mod search;
