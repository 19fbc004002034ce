use crate::dto::MoneyDto;
use crate::error::{ApiResult, Problem};
use crate::extract::{Query, json_response};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mercato_core::{Error, Id, Money};
use mercato_search::{SearchQuery, SearchSort};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search)).routes(routes!(suggest))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Free text; each word of 5+ letters also matches with one typo, and the
    /// last word matches as a prefix.
    q: Option<String>,
    /// Category id or slug (includes subcategories).
    category: Option<String>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    /// `relevance` (default), `price_asc`, `price_desc` or `newest`.
    sort: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HitDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub slug: String,
    pub name: String,
    pub price: MoneyDto,
    #[schema(value_type = String)]
    pub category_id: Id,
    pub score: f32,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryFacet {
    #[schema(value_type = String)]
    pub category_id: Id,
    pub slug: String,
    pub name: String,
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct PriceBandFacet {
    /// Inclusive lower bound in minor units (absent: open).
    pub min: Option<i64>,
    /// Exclusive upper bound in minor units (absent: open).
    pub max: Option<i64>,
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct FacetsDto {
    /// Matches per category, computed without the `category` filter so a UI
    /// can show the siblings of the chosen category.
    pub categories: Vec<CategoryFacet>,
    pub price_bands: Vec<PriceBandFacet>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    pub hits: Vec<HitDto>,
    pub total: u64,
    pub facets: FacetsDto,
    pub next_cursor: Option<String>,
}

/// Full-text product search with typo tolerance, filters and facets.
#[utoipa::path(get, path = "/api/v1/search", tag = "catalog", params(SearchParams),
    responses((status = 200, body = SearchResponse), (status = 422, body = Problem)))]
async fn search(State(s): State<AppState>, uri: axum::http::Uri, Query(p): Query<SearchParams>) -> ApiResult<Response> {
    // Popular queries repeat: results are cached by the exact query string and
    // flushed whenever the index changes (see the indexer).
    let key = uri.query().unwrap_or("").to_string();
    let state = s.clone();
    let body = s.search_results.get_or_load(&key, || async move { search_uncached(&state, p).await.map(Some) }).await?;
    let body = body.map(|b| b.as_str().to_string()).unwrap_or_default();
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn search_uncached(s: &AppState, p: SearchParams) -> Result<String, Error> {
    let sort = match p.sort.as_deref().unwrap_or("relevance") {
        "relevance" => SearchSort::Relevance,
        "price_asc" => SearchSort::PriceAsc,
        "price_desc" => SearchSort::PriceDesc,
        "newest" => SearchSort::Newest,
        other => {
            return Err(Error::field(
                "sort",
                format!("'{other}' is not one of relevance, price_asc, price_desc, newest"),
            ));
        }
    };
    let category = match &p.category {
        Some(c) => Some(s.catalog.category(c).await?.id.0),
        None => None,
    };
    let query = SearchQuery {
        q: p.q.unwrap_or_default(),
        category,
        min_price: p.min_price,
        max_price: p.max_price,
        sort,
        limit: p.limit.unwrap_or(20),
        cursor: p.cursor,
    };
    let result = s.search.search(query).await?;
    let currency = s.catalog.currency();
    let cats = s.catalog.categories().await?;
    let body = SearchResponse {
        hits: result
            .hits
            .into_iter()
            .map(|h| HitDto {
                id: Id(h.id),
                slug: h.slug,
                name: h.name,
                price: Money::new(h.price, currency).into(),
                category_id: Id(h.category_id),
                score: h.score,
            })
            .collect(),
        total: result.total,
        facets: FacetsDto {
            categories: result
                .facets
                .categories
                .into_iter()
                .filter_map(|c| {
                    cats.iter().find(|x| x.id.0 == c.category_id).map(|x| CategoryFacet {
                        category_id: x.id,
                        slug: x.slug.clone(),
                        name: x.name.clone(),
                        count: c.count,
                    })
                })
                .collect(),
            price_bands: result
                .facets
                .price_bands
                .into_iter()
                .map(|b| PriceBandFacet { min: b.min, max: b.max, count: b.count })
                .collect(),
        },
        next_cursor: result.next_cursor,
    };
    serde_json::to_string(&body).map_err(|e| Error::internal(e.to_string()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuggestParams {
    /// What the shopper has typed so far.
    q: String,
    /// 1 to 20, default 8.
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct SuggestionDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub slug: String,
    pub name: String,
}

/// Autocomplete: product names matching what was typed so far.
#[utoipa::path(get, path = "/api/v1/search/suggest", tag = "catalog", params(SuggestParams),
    responses((status = 200, body = Vec<SuggestionDto>), (status = 422, body = Problem)))]
async fn suggest(State(s): State<AppState>, Query(p): Query<SuggestParams>) -> ApiResult<Response> {
    let limit = p.limit.unwrap_or(8);
    if !(1..=20).contains(&limit) {
        return Err(Error::field("limit", "must be between 1 and 20").into());
    }
    let items: Vec<SuggestionDto> = s
        .search
        .suggest(&p.q, limit)
        .await?
        .into_iter()
        .map(|x| SuggestionDto { id: Id(x.id), slug: x.slug, name: x.name })
        .collect();
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "suggestions": items })))
}
