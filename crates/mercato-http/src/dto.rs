//! The JSON shapes of the public API. Only this crate knows them; domain types
//! are converted here, so a domain refactor cannot silently change the API.

use mercato_core::{Id, Millis, Money, Options};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// RFC 3339 UTC timestamp from epoch milliseconds.
pub fn ts(ms: Millis) -> String {
    mercato_platform::rfc3339(ms)
}

/// An amount in minor units (cents) and an ISO 4217 currency.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct MoneyDto {
    #[schema(example = 1999)]
    pub amount: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: mercato_core::Currency,
}

impl From<Money> for MoneyDto {
    fn from(m: Money) -> Self {
        MoneyDto { amount: m.amount, currency: m.currency }
    }
}
impl From<MoneyDto> for Money {
    fn from(m: MoneyDto) -> Self {
        Money::new(m.amount, m.currency)
    }
}

/// A page of a keyset-paginated listing; pass `next_cursor` back as `cursor`.
#[derive(Serialize, ToSchema)]
pub struct PageDto<T: ToSchema> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

// ---- auth ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    #[schema(example = "Ann")]
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct RegisterResponse {
    pub email: String,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub customer: CustomerDto,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub email: String,
    pub name: String,
    #[schema(example = "customer")]
    pub role: &'static str,
    pub created_at: String,
}

impl From<mercato_contracts::customers::Customer> for CustomerDto {
    fn from(c: mercato_contracts::customers::Customer) -> Self {
        CustomerDto { id: c.id, email: c.email, name: c.name, role: c.role.as_str(), created_at: ts(c.created_at) }
    }
}

// ---- catalog ----

#[derive(Serialize, ToSchema)]
pub struct CategoryNode {
    #[schema(value_type = String)]
    pub id: Id,
    pub slug: String,
    pub name: String,
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Id>,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryTree {
    pub items: Vec<CategoryNode>,
}

#[derive(Serialize, ToSchema)]
pub struct CategoryRef {
    #[schema(value_type = String)]
    pub id: Id,
    pub slug: String,
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategoryRequest {
    pub name: String,
    pub slug: Option<String>,
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Id>,
}

#[derive(Serialize, ToSchema)]
pub struct ProductSummaryDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub slug: String,
    pub name: String,
    /// The lowest variant price.
    pub price: MoneyDto,
    #[schema(value_type = String)]
    pub category_id: Id,
}

impl From<mercato_contracts::catalog::ProductSummary> for ProductSummaryDto {
    fn from(p: mercato_contracts::catalog::ProductSummary) -> Self {
        ProductSummaryDto { id: p.id, slug: p.slug, name: p.name, price: p.price.into(), category_id: p.category_id }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VariantDto {
    pub sku: String,
    #[schema(value_type = HashMap<String, String>)]
    pub options: Options,
    pub price: MoneyDto,
    pub weight_grams: i64,
    /// Units available to buy now (display value; may lag by seconds).
    pub available: i64,
}

/// A variant and the product it belongs to.
#[derive(Serialize, ToSchema)]
pub struct VariantOfProduct {
    #[schema(value_type = String)]
    pub product_id: Id,
    #[serde(flatten)]
    pub variant: VariantDto,
}

#[derive(Serialize, ToSchema)]
pub struct ProductDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub slug: String,
    pub name: String,
    pub description: String,
    #[schema(example = "published")]
    pub status: &'static str,
    pub category: CategoryRef,
    pub price: MoneyDto,
    pub variants: Vec<VariantDto>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVariantRequest {
    pub sku: String,
    pub price: MoneyDto,
    #[serde(default)]
    #[schema(value_type = HashMap<String, String>)]
    pub options: Options,
    #[serde(default)]
    pub weight_grams: i64,
    /// Initial available units (recorded as an inventory adjustment).
    pub stock: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductRequest {
    pub name: String,
    pub slug: Option<String>,
    #[serde(default)]
    pub description: String,
    #[schema(value_type = String)]
    pub category_id: Id,
    /// `draft` (default) or `published`.
    pub status: Option<String>,
    pub variants: Vec<NewVariantRequest>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    /// `draft`, `published` or `archived`.
    pub status: Option<String>,
    #[schema(value_type = Option<String>)]
    pub category_id: Option<Id>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantPatchRequest {
    pub price: Option<MoneyDto>,
    pub weight_grams: Option<i64>,
}

// ---- inventory ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockRequest {
    pub available: i64,
    pub reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustStockRequest {
    /// Units to add (negative to remove).
    pub delta: i64,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct StockDto {
    pub sku: String,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustments: Option<Vec<AdjustmentDto>>,
}

#[derive(Serialize, ToSchema)]
pub struct AdjustmentDto {
    #[schema(value_type = String)]
    pub id: Id,
    pub delta: i64,
    pub available_after: i64,
    pub reason: String,
    pub actor: String,
    pub created_at: String,
}

// ---- cart ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemRequest {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantityRequest {
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippingMethodRequest {
    pub code: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct LineDto {
    pub sku: String,
    #[schema(value_type = String)]
    pub product_id: Id,
    pub name: String,
    #[schema(value_type = HashMap<String, String>)]
    pub options: Options,
    pub quantity: i64,
    pub unit_price: MoneyDto,
    pub line_total: MoneyDto,
}

#[derive(Serialize, ToSchema)]
pub struct TotalsDto {
    pub subtotal: MoneyDto,
    pub discount: MoneyDto,
    pub shipping: MoneyDto,
    pub tax: MoneyDto,
    pub total: MoneyDto,
}

impl From<mercato_contracts::cart::Totals> for TotalsDto {
    fn from(t: mercato_contracts::cart::Totals) -> Self {
        TotalsDto {
            subtotal: t.subtotal.into(),
            discount: t.discount.into(),
            shipping: t.shipping.into(),
            tax: t.tax.into(),
            total: t.total.into(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ShippingMethodDto {
    pub code: String,
    pub name: String,
    pub price: MoneyDto,
    pub free_over: Option<MoneyDto>,
}

/// A discount that applies, and why.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct DiscountDto {
    #[schema(value_type = String)]
    pub promotion_id: Id,
    /// The coupon code; absent for automatic promotions.
    pub code: Option<String>,
    pub description: String,
    pub amount: MoneyDto,
}

impl DiscountDto {
    pub fn from_applied(a: mercato_contracts::promotions::Applied, currency: mercato_core::Currency) -> Self {
        DiscountDto {
            promotion_id: a.promotion_id,
            code: a.code,
            description: a.description,
            amount: Money::new(a.amount, currency).into(),
        }
    }
}

/// Why the cart's coupon does not apply.
#[derive(Serialize, ToSchema)]
pub struct CouponProblemDto {
    pub code: String,
    /// `expired`, `not_started`, `usage_limit_reached`, `customer_limit_reached`,
    /// `below_minimum_subtotal`, `not_applicable`, `inactive` or `not_found`.
    pub reason: String,
    pub detail: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CouponRequest {
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct CartDto {
    #[schema(value_type = Option<String>)]
    pub id: Option<Id>,
    pub items: Vec<LineDto>,
    pub totals: TotalsDto,
    /// Each discount in `totals.discount`, and why it applies.
    pub discounts: Vec<DiscountDto>,
    pub coupon: Option<String>,
    pub coupon_problem: Option<CouponProblemDto>,
    pub shipping_method: String,
    pub shipping_methods: Vec<ShippingMethodDto>,
    /// SKUs still in the cart that can no longer be bought.
    pub unavailable: Vec<String>,
}

// ---- orders ----

#[derive(Serialize, Deserialize, ToSchema)]
pub struct AddressDto {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `US`.
    pub country: String,
    pub phone: Option<String>,
}

impl From<AddressDto> for mercato_contracts::orders::Address {
    fn from(a: AddressDto) -> Self {
        mercato_contracts::orders::Address {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
            phone: a.phone,
        }
    }
}

impl From<mercato_contracts::orders::Address> for AddressDto {
    fn from(a: mercato_contracts::orders::Address) -> Self {
        AddressDto {
            name: a.name,
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            region: a.region,
            postal_code: a.postal_code,
            country: a.country,
            phone: a.phone,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    pub shipping_address: AddressDto,
    pub shipping_method: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryDto {
    pub from: Option<&'static str>,
    pub to: &'static str,
    pub actor: String,
    pub note: Option<String>,
    pub at: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrderDto {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub customer_id: Id,
    #[schema(example = "pending_payment")]
    pub status: &'static str,
    #[schema(value_type = String)]
    pub currency: mercato_core::Currency,
    pub items: Vec<LineDto>,
    pub subtotal: MoneyDto,
    pub discount: MoneyDto,
    pub discounts: Vec<DiscountDto>,
    pub shipping: MoneyDto,
    pub tax: MoneyDto,
    pub total: MoneyDto,
    pub refunded: MoneyDto,
    pub shipping_address: Option<AddressDto>,
    /// Set for orders bought in a flash sale.
    #[schema(value_type = Option<String>)]
    pub flash_sale_id: Option<Id>,
    pub shipping_method: String,
    /// When the order is cancelled if still unpaid.
    pub payment_due_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub history: Vec<HistoryDto>,
}

impl From<mercato_contracts::orders::Order> for OrderDto {
    fn from(o: mercato_contracts::orders::Order) -> Self {
        OrderDto {
            id: o.id,
            customer_id: o.customer_id,
            status: o.status.as_str(),
            currency: o.currency,
            items: o
                .items
                .into_iter()
                .map(|i| LineDto {
                    sku: i.sku,
                    product_id: i.product_id,
                    name: i.name,
                    options: i.options,
                    quantity: i.quantity,
                    unit_price: i.unit_price.into(),
                    line_total: i.line_total.into(),
                })
                .collect(),
            subtotal: o.subtotal.into(),
            discount: o.discount.into(),
            discounts: o.discounts.into_iter().map(|a| DiscountDto::from_applied(a, o.currency)).collect(),
            shipping: o.shipping.into(),
            tax: o.tax.into(),
            total: o.total.into(),
            refunded: o.refunded.into(),
            shipping_address: o.shipping_address.map(Into::into),
            flash_sale_id: o.flash_sale_id,
            shipping_method: o.shipping_method,
            payment_due_at: if o.status == mercato_contracts::orders::OrderStatus::PendingPayment {
                o.payment_due_at.map(ts)
            } else {
                None
            },
            created_at: ts(o.created_at),
            updated_at: ts(o.updated_at),
            history: o
                .history
                .into_iter()
                .map(|h| HistoryDto {
                    from: h.from.map(|s| s.as_str()),
                    to: h.to.as_str(),
                    actor: h.actor,
                    note: h.note,
                    at: ts(h.at),
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// Only `test_card` with the built-in test provider.
    #[schema(example = "test_card")]
    pub method: String,
    #[schema(example = "4242424242424242")]
    pub card_number: String,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentDto {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub order_id: Id,
    /// `succeeded`, `processing` or `requires_payment`.
    pub status: &'static str,
    pub amount: MoneyDto,
    pub refunded: MoneyDto,
    pub created_at: String,
}

impl From<mercato_contracts::payments::Payment> for PaymentDto {
    fn from(p: mercato_contracts::payments::Payment) -> Self {
        use mercato_contracts::payments::PaymentStatus as S;
        PaymentDto {
            id: p.id,
            order_id: p.order_id,
            status: match p.status {
                S::Succeeded => "succeeded",
                S::Processing => "processing",
                S::RequiresPayment => "requires_payment",
            },
            amount: p.amount.into(),
            refunded: p.refunded.into(),
            created_at: ts(p.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units; omitted: everything not yet refunded.
    pub amount: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: Option<String>,
}
