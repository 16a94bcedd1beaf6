<?php

// Stand-ins for the sale module's entities, with the methods the forwarder reads: getId(), getField(),
// isPaid(), getPaymentCollection() (https://dev.1c-bitrix.ru/api_d7/bitrix/sale/classes/order/index.php).

namespace Bitrix\Sale;

class Payment
{
    /** @var int */
    private $id;
    /** @var bool */
    private $paid;

    public function __construct(int $id, bool $paid = true)
    {
        $this->id = $id;
        $this->paid = $paid;
    }

    public function getId()
    {
        return $this->id;
    }

    public function isPaid()
    {
        return $this->paid;
    }

    public function getField($name)
    {
        return $name === 'PAID' ? ($this->paid ? 'Y' : 'N') : null;
    }
}

class PaymentCollection implements \IteratorAggregate
{
    /** @var list<Payment> */
    private $payments;

    public function __construct(array $payments)
    {
        $this->payments = $payments;
    }

    public function getIterator(): \ArrayIterator
    {
        return new \ArrayIterator($this->payments);
    }
}

class Order
{
    /** @var int */
    private $id;
    /** @var array<string, string> */
    private $fields;
    /** @var PaymentCollection */
    private $payments;

    public function __construct(int $id, array $fields = [], array $payments = [])
    {
        $this->id = $id;
        $this->fields = $fields + ['ID' => (string) $id, 'XML_ID' => 'bx_' . $id, 'PAYED' => 'N'];
        $this->payments = new PaymentCollection($payments);
    }

    public function getId()
    {
        return $this->id;
    }

    public function getField($name)
    {
        return $this->fields[$name] ?? null;
    }

    public function isPaid()
    {
        return $this->getField('PAYED') === 'Y';
    }

    public function getPaymentCollection()
    {
        return $this->payments;
    }
}
