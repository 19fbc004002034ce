use crate::dto::*;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Admin, Json, Query, json_response, path_id};
use crate::render::etag_of;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use mercato_contracts::catalog::{
    Category, ListQuery, NewProduct, NewVariant, Page, Product, ProductPatch, ProductStatus, ProductSummary, SortOrder,
    VariantPatch,
};
use mercato_core::{Error, Id};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(categories))
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(create_category))
        .routes(routes!(admin_list_products))
        .routes(routes!(create_product))
        .routes(routes!(admin_get_product, update_product))
        .routes(routes!(update_variant))
}

/// The category tree.
#[utoipa::path(get, path = "/api/v1/categories", tag = "catalog", responses((status = 200, body = CategoryTree)))]
async fn categories(State(s): State<AppState>) -> ApiResult<Response> {
    let cats = s.catalog.categories().await?;
    fn build(cats: &[Category], parent: Option<Id>) -> Vec<CategoryNode> {
        cats.iter()
            .filter(|c| c.parent_id == parent)
            .map(|c| CategoryNode {
                id: c.id,
                slug: c.slug.clone(),
                name: c.name.clone(),
                parent_id: c.parent_id,
                children: build(cats, Some(c.id)),
            })
            .collect()
    }
    Ok(cached_json(&CategoryTree { items: build(&cats, None) }, &HeaderMap::new(), 60))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1 to 100, default 20.
    limit: Option<usize>,
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
    /// Category id or slug; includes its subcategories.
    category: Option<String>,
    /// Lowest price in minor units.
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// `newest` (default), `price_asc`, `price_desc` or `name`.
    sort: Option<String>,
    /// Admin listings only: `draft`, `published` or `archived`.
    status: Option<String>,
}

fn list_query(p: ListParams, admin: bool) -> Result<ListQuery, Error> {
    Ok(ListQuery {
        category: p.category,
        min_price: p.min_price,
        max_price: p.max_price,
        sort: p.sort.as_deref().map(SortOrder::parse).transpose()?.unwrap_or_default(),
        limit: p.limit.unwrap_or(20),
        cursor: p.cursor,
        status: if admin { p.status.as_deref().map(ProductStatus::parse).transpose()? } else { None },
        include_all_statuses: admin,
    })
}

/// Published products, newest first by default, with keyset pagination.
#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(ListParams),
    responses((status = 200, body = PageDto<ProductSummaryDto>), (status = 422, body = Problem)))]
async fn list_products(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(p): Query<ListParams>,
) -> ApiResult<Response> {
    let page = s.catalog.list(list_query(p, false)?).await?;
    Ok(cached_json(&page_dto(&page), &headers, 10))
}

/// All products in any status (admin).
#[utoipa::path(get, path = "/api/v1/admin/products", tag = "admin", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = PageDto<ProductSummaryDto>), (status = 403, body = Problem)))]
async fn admin_list_products(State(s): State<AppState>, _a: Admin, Query(p): Query<ListParams>) -> ApiResult<Response> {
    let page = s.catalog.list(list_query(p, true)?).await?;
    Ok(json_response(StatusCode::OK, &page_dto(&page)))
}

fn page_dto(page: &Page<ProductSummary>) -> PageDto<ProductSummaryDto> {
    PageDto { items: page.items.iter().cloned().map(Into::into).collect(), next_cursor: page.next_cursor.clone() }
}

pub async fn product_dto(s: &AppState, p: &Product) -> Result<ProductDto, Error> {
    let available = s.inventory.available(&p.skus()).await?;
    let category = s.catalog.category(&p.category_id.to_string()).await?;
    Ok(dto_of(p, category, &available))
}

fn dto_of(p: &Product, category: Category, available: &std::collections::HashMap<String, i64>) -> ProductDto {
    ProductDto {
        id: p.id,
        slug: p.slug.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        status: p.status.as_str(),
        category: CategoryRef { id: category.id, slug: category.slug, name: category.name },
        price: p.price.into(),
        variants: p
            .variants
            .iter()
            .map(|v| VariantDto {
                sku: v.sku.clone(),
                options: v.options.clone(),
                price: v.price.into(),
                weight_grams: v.weight_grams,
                available: available.get(&v.sku).copied().unwrap_or(0),
            })
            .collect(),
        created_at: ts(p.created_at),
        updated_at: ts(p.updated_at),
    }
}

/// JSON with a strong ETag over the exact bytes; `If-None-Match` gets a 304.
pub fn cached_json<T: serde::Serialize>(value: &T, headers: &HeaderMap, max_age: u32) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let etag = etag_of(&body);
            json_with_etag(Bytes::from(body), &etag, headers, max_age)
        }
        Err(e) => ApiError(Error::internal(e.to_string())).into_response(),
    }
}

fn json_with_etag(body: Bytes, etag: &HeaderValue, headers: &HeaderMap, max_age: u32) -> Response {
    let tag = etag.to_str().unwrap_or_default();
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == tag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, etag.clone());
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// A published product by id or slug, with per-variant availability.
#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "product id or slug")),
    responses((status = 200, body = ProductDto), (status = 304), (status = 404, body = Problem)))]
async fn get_product(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    const MAX_AGE: u32 = 5;
    let p = s.catalog.page_product(&id, true).await?;
    let categories = s.catalog.categories().await?;
    let page = s
        .product_pages
        .page(
            &p,
            &categories,
            |sku| s.inventory.shown_generation(sku),
            || async {
                let available = s.inventory.available(&p.skus()).await?;
                let category = match categories.iter().find(|c| c.id == p.category_id) {
                    Some(c) => c.clone(),
                    None => s.catalog.category(&p.category_id.to_string()).await?,
                };
                serde_json::to_vec(&dto_of(&p, category, &available))
                    .map(Bytes::from)
                    .map_err(|e| Error::internal(e.to_string()))
            },
        )
        .await?;
    Ok(json_with_etag(page.body.clone(), &page.etag, &headers, MAX_AGE))
}

/// Create a category (admin).
#[utoipa::path(post, path = "/api/v1/admin/categories", tag = "admin", request_body = NewCategoryRequest, security(("bearer" = [])),
    responses((status = 201, body = CategoryRef), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_category(
    State(s): State<AppState>,
    _a: Admin,
    Json(req): Json<NewCategoryRequest>,
) -> ApiResult<Response> {
    let c = s.catalog.create_category(&req.name, req.slug.as_deref(), req.parent_id).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "id": c.id, "slug": c.slug, "name": c.name, "parent_id": c.parent_id }),
    ))
}

/// Create a product with its variants (admin). Drafts are invisible to shoppers.
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "admin", request_body = NewProductRequest, security(("bearer" = [])),
    responses((status = 201, body = ProductDto), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_product(
    State(s): State<AppState>,
    Admin(a): Admin,
    Json(req): Json<NewProductRequest>,
) -> ApiResult<Response> {
    let status = req.status.as_deref().map(ProductStatus::parse).transpose()?.unwrap_or(ProductStatus::Draft);
    if status == ProductStatus::Archived {
        return Err(Error::field("status", "a new product is draft or published").into());
    }
    for v in &req.variants {
        if v.stock.is_some_and(|n| n < 0) {
            return Err(Error::field("variants.stock", "must not be negative").into());
        }
    }
    let stock: Vec<(String, i64)> = req.variants.iter().filter_map(|v| v.stock.map(|n| (v.sku.clone(), n))).collect();
    let new = NewProduct {
        name: req.name,
        slug: req.slug,
        description: req.description,
        category_id: req.category_id,
        status,
        variants: req
            .variants
            .into_iter()
            .map(|v| NewVariant { sku: v.sku, options: v.options, price: v.price.into(), weight_grams: v.weight_grams })
            .collect(),
    };
    let p = s.catalog.create(new).await?;
    for (sku, n) in stock {
        s.inventory.set_available(&sku, n, "initial stock", &format!("admin:{}", a.customer_id)).await?;
    }
    let dto = product_dto(&s, &p).await?;
    Ok(json_response(StatusCode::CREATED, &dto))
}

/// Any product by id, in any status (admin).
#[utoipa::path(get, path = "/api/v1/admin/products/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ProductDto), (status = 404, body = Problem)))]
async fn admin_get_product(State(s): State<AppState>, _a: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let p = s.catalog.get(&id, false).await?;
    Ok(json_response(StatusCode::OK, &product_dto(&s, &p).await?))
}

/// Update a product's name, description, category or status (admin).
#[utoipa::path(patch, path = "/api/v1/admin/products/{id}", tag = "admin", request_body = ProductPatchRequest, security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ProductDto), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_product(
    State(s): State<AppState>,
    _a: Admin,
    Path(id): Path<String>,
    Json(req): Json<ProductPatchRequest>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let patch = ProductPatch {
        name: req.name,
        description: req.description,
        status: req.status.as_deref().map(ProductStatus::parse).transpose()?,
        category_id: req.category_id,
    };
    let p = s.catalog.update(id, patch).await?;
    Ok(json_response(StatusCode::OK, &product_dto(&s, &p).await?))
}

/// Update a variant's price or weight (admin). Carts see the new price at once;
/// placed orders keep the price they were placed at.
#[utoipa::path(patch, path = "/api/v1/admin/variants/{sku}", tag = "admin", request_body = VariantPatchRequest, security(("bearer" = [])),
    params(("sku" = String, Path)), responses((status = 200, body = VariantOfProduct), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn update_variant(
    State(s): State<AppState>,
    _a: Admin,
    Path(sku): Path<String>,
    Json(req): Json<VariantPatchRequest>,
) -> ApiResult<Response> {
    let p = s
        .catalog
        .update_variant(&sku, VariantPatch { price: req.price.map(Into::into), weight_grams: req.weight_grams })
        .await?;
    let dto = product_dto(&s, &p).await?;
    let v =
        dto.variants.into_iter().find(|v| v.sku == sku).ok_or_else(|| Error::internal("updated variant vanished"))?;
    Ok(json_response(StatusCode::OK, &VariantOfProduct { product_id: dto.id, variant: v }))
}
