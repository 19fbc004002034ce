use crate::dto::*;
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, Json, json_response};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mercato_contracts::inventory::Stock;
use mercato_core::Error;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_stock, set_stock)).routes(routes!(adjust_stock))
}

async fn known_sku(s: &AppState, sku: &str) -> Result<(), Error> {
    if s.catalog.skus(vec![sku.to_string()]).await?.contains_key(sku) {
        Ok(())
    } else {
        Err(Error::not_found(format!("SKU {sku} not found")))
    }
}

fn dto(sku: &str, st: Stock) -> StockDto {
    StockDto { sku: sku.to_string(), available: st.available, reserved: st.reserved, sold: st.sold, adjustments: None }
}

/// Stock of a SKU with its most recent adjustments (admin).
#[utoipa::path(get, path = "/api/v1/admin/inventory/{sku}", tag = "admin", security(("bearer" = [])),
    params(("sku" = String, Path)), responses((status = 200, body = StockDto), (status = 404, body = Problem)))]
async fn get_stock(State(s): State<AppState>, _a: Admin, Path(sku): Path<String>) -> ApiResult<Response> {
    known_sku(&s, &sku).await?;
    let st = s.inventory.stock(&sku).await?;
    let adjustments = s
        .inventory
        .adjustments(&sku, 100)
        .await?
        .into_iter()
        .map(|a| AdjustmentDto {
            id: a.id,
            delta: a.delta,
            available_after: a.available_after,
            reason: a.reason,
            actor: a.actor,
            created_at: ts(a.created_at),
        })
        .collect();
    let mut body = dto(&sku, st);
    body.adjustments = Some(adjustments);
    Ok(json_response(StatusCode::OK, &body))
}

/// Set the available quantity of a SKU (admin); the change is audited.
#[utoipa::path(put, path = "/api/v1/admin/inventory/{sku}", tag = "admin", request_body = SetStockRequest, security(("bearer" = [])),
    params(("sku" = String, Path)), responses((status = 200, body = StockDto), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_stock(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(sku): Path<String>,
    Json(req): Json<SetStockRequest>,
) -> ApiResult<Response> {
    known_sku(&s, &sku).await?;
    let reason = req.reason.unwrap_or_else(|| "stock set by admin".into());
    let st = s.inventory.set_available(&sku, req.available, &reason, &format!("admin:{}", a.customer_id)).await?;
    Ok(json_response(StatusCode::OK, &dto(&sku, st)))
}

/// Add or remove units with a reason (admin). Removing more than is available
/// is refused.
#[utoipa::path(post, path = "/api/v1/admin/inventory/{sku}/adjustments", tag = "admin", request_body = AdjustStockRequest, security(("bearer" = [])),
    params(("sku" = String, Path)), responses((status = 200, body = StockDto), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn adjust_stock(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(sku): Path<String>,
    Json(req): Json<AdjustStockRequest>,
) -> ApiResult<Response> {
    known_sku(&s, &sku).await?;
    let st = s.inventory.adjust(&sku, req.delta, &req.reason, &format!("admin:{}", a.customer_id)).await?;
    Ok(json_response(StatusCode::OK, &dto(&sku, st)))
}
