//! Orders placed by a flash-sale purchase. The flash-sale domain has already
//! won the unit and moved it into a reservation keyed by the order id, so
//! placing the order is one write, idempotent on that id.

use crate::model::{Address, Order, OrderItem};
use crate::service::OrdersService;
use crate::store::{self, insert_order};
use mercato_core::{Error, Id};

impl OrdersService {
    /// Creates the order for a flash-sale purchase: one unit at the sale price.
    /// The caller has already moved the unit into a reservation keyed by
    /// `order_id`. Idempotent on `order_id`.
    pub async fn place_flash(
        &self,
        order_id: Id,
        customer: Id,
        sale_id: Id,
        item: OrderItem,
        address: Option<Address>,
    ) -> Result<Order, Error> {
        let address = address.map(Address::validate).transpose()?;
        let lines = [mercato_contracts::lines::PricedLine {
            sku: item.sku.clone(),
            product_id: item.product_id,
            name: item.name.clone(),
            options: item.options.clone(),
            quantity: item.quantity,
            unit_price: item.unit_price,
            line_total: item.line_total,
        }];
        let totals = self.inner().cart.totals_for(&lines)?;
        let method = self.inner().cart.shipping_methods()[0].code.clone();
        let order = self.new_order(order_id, customer, vec![item], &totals, vec![], address, Some(sale_id), method);
        let history_id = self.inner().ids.next()?;
        let o = order.clone();
        let created = self
            .inner()
            .db
            .write(move |tx| {
                if store::exists(tx, o.id)? {
                    return Ok(false);
                }
                insert_order(tx, &o, history_id, None, None)?;
                Ok(true)
            })
            .await?;
        self.inner().bus.wake();
        if created { Ok(order) } else { self.get(order_id).await }
    }
}
