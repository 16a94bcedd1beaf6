<?php

declare(strict_types=1);

namespace Bxsync\Forwarder;

/**
 * The shop's kernel events (module sale), forwarded to bxsync's POST /api/bitrix/cms/ under the names Bitrix's own
 * outgoing webhooks use. Parameters: https://dev.1c-bitrix.ru/api_d7/bitrix/sale/events/order_saved.php (ENTITY,
 * VALUES, IS_NEW), .../sale_entitysaved.php (ENTITY = the payment), .../order_special.php (OnSaleOrderPaid: ENTITY).
 *
 * A handler runs inside the customer's checkout or the manager's save: it only queues (Outbox), and nothing it does
 * may throw into the sale module — EventManager rethrows a handler's exception into the save that fired it
 * (sendToEventHandler() in the kernel copy
 * https://github.com/avshatalov48/bitrix-core-business/blob/master/modules/main/lib/eventmanager.php).
 *
 * A portal without the shop's application token does not forward shop events: an on-premises Bitrix24 has a sale
 * module of its own (its built-in store) whose orders are not the shop's.
 */
final class SaleHandlers
{
    /** OnSaleOrderSaved: the end of an order save, with its payments and shipments saved. */
    public static function onOrderSaved(...$args): void
    {
        try {
            if (!Settings::hasToken(Settings::SIDE_SHOP)) {
                return;
            }
            $order = EventArgs::param($args, 'ENTITY', 0);
            $fields = ['ACTION' => 'save'];
            if (is_object($order) && method_exists($order, 'getField')) {
                $fields = ['XML_ID' => (string) $order->getField('XML_ID')] + $fields;
            }
            Outbox::add(Settings::SIDE_SHOP, 'ONSALEORDERSAVED', EventArgs::id($order), $fields);
        } catch (\Throwable $e) {
            self::report('OnSaleOrderSaved', $e);
        }
    }

    /** OnSalePaymentEntitySaved: a payment was saved (paid, unpaid, added). The id sent is the payment's. */
    public static function onPaymentSaved(...$args): void
    {
        try {
            if (!Settings::hasToken(Settings::SIDE_SHOP)) {
                return;
            }
            $payment = EventArgs::param($args, 'ENTITY', 0);
            Outbox::add(Settings::SIDE_SHOP, 'ONPAYMENTENTITYSAVED', EventArgs::id($payment));
        } catch (\Throwable $e) {
            self::report('OnSalePaymentEntitySaved', $e);
        }
    }

    /**
     * OnSaleOrderPaid: the order's paid flag changed. Every saved payment of the order is announced, so bxsync's
     * payment queue hears of it even where a payment is marked paid without its own entity save; the
     * OnSalePaymentEntitySaved of the same hit collapses into the same POST. A payment not saved yet (id 0) is
     * announced by its own OnSalePaymentEntitySaved.
     */
    public static function onOrderPaid(...$args): void
    {
        try {
            if (!Settings::hasToken(Settings::SIDE_SHOP)) {
                return;
            }
            $order = EventArgs::param($args, 'ENTITY', 0);
            if (!is_object($order) || !method_exists($order, 'getPaymentCollection')) {
                return;
            }
            foreach ($order->getPaymentCollection() as $payment) {
                Outbox::add(Settings::SIDE_SHOP, 'ONPAYMENTENTITYSAVED', EventArgs::id($payment));
            }
        } catch (\Throwable $e) {
            self::report('OnSaleOrderPaid', $e);
        }
    }

    /**
     * OnSaleOrderDeleted. The docs list VALUES (the deleted order's fields,
     * https://dev.1c-bitrix.ru/api_d7/bitrix/sale/events/sale_deleted.php); the kernel sends ENTITY (the order)
     * and VALUE (whether the delete succeeded) — OrderBase::delete() in the public kernel copies, and a forum
     * report: https://dev.1c-bitrix.ru/support/forum/messages/forum6/topic84917/message432003/. Both are read.
     */
    public static function onOrderDeleted(...$args): void
    {
        try {
            if (!Settings::hasToken(Settings::SIDE_SHOP)) {
                return;
            }
            if (EventArgs::param($args, 'VALUE', 1) === false) {
                return; // the delete failed: the order is still there
            }
            $id = EventArgs::id(EventArgs::param($args, 'ENTITY', 0));
            if ($id === 0) {
                $id = EventArgs::id(EventArgs::param($args, 'VALUES', 1));
            }
            Outbox::add(Settings::SIDE_SHOP, 'ONORDERDELETED', $id);
        } catch (\Throwable $e) {
            self::report('OnSaleOrderDeleted', $e);
        }
    }

    private static function report(string $event, \Throwable $e): void
    {
        Log::warning($event . ' not forwarded: ' . get_class($e) . ': ' . $e->getMessage());
    }
}
