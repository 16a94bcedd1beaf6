<?php

// Stand-ins for what /bitrix/admin/settings.php gives a module's options.php: $APPLICATION, $USER, the session
// check and the admin form helpers. They print plain markers so a test can read the page.

define('B_PROLOG_INCLUDED', true);

final class StubUser
{
    public function IsAdmin()
    {
        return getenv('BXSYNC_STUB_NOT_ADMIN') ? false : true;
    }
}

final class StubApplication
{
    public function GetCurPage()
    {
        return '/bitrix/admin/settings.php';
    }
}

final class CAdminTabControl
{
    public function __construct($name, $tabs)
    {
    }

    public function Begin()
    {
        echo "<table>\n";
    }

    public function BeginNextTab()
    {
    }

    public function Buttons()
    {
        echo "</table>\n";
    }

    public function End()
    {
    }
}

final class CAdminMessage
{
    public static function ShowMessage($message)
    {
        echo '<div class="message ' . strtolower($message['TYPE']) . '">' . htmlspecialcharsbx($message['MESSAGE']) . "</div>\n";
    }
}

function check_bitrix_sessid()
{
    return ($_POST['sessid'] ?? '') === 'stub-session';
}

function bitrix_sessid_post()
{
    return '<input type="hidden" name="sessid" value="stub-session">';
}

function htmlspecialcharsbx($string)
{
    return htmlspecialchars((string) $string, ENT_QUOTES);
}

$GLOBALS['USER'] = new StubUser();
$GLOBALS['APPLICATION'] = new StubApplication();
